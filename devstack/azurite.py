"""Azurite (Table Storage only) as a managed child process, from the npm package pinned in package.json."""

from __future__ import annotations

from pathlib import Path

from devstack.processes import ROOT, ManagedProcess, free_port

# Azurite's well-known development account; not a secret (documented by Microsoft for the emulator).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


def azurite_table(port: int | None = None, *, location: Path | None = None, in_memory: bool = True) -> ManagedProcess:
    """An Azurite table service; in memory unless a location is given (then state survives restarts)."""
    port = port or free_port()
    binary = ROOT / "node_modules" / ".bin" / "azurite-table"
    argv = [str(binary), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--skipApiVersionCheck", "--loose"]
    if in_memory and location is None:
        argv.append("--inMemoryPersistence")
    else:
        location = location or ROOT / ".devstack" / "azurite"
        location.mkdir(parents=True, exist_ok=True)
        argv += ["--location", str(location)]
    return ManagedProcess("azurite", argv, port=port)
