"""Start the emulator as a child process and build the connection string the SDK needs.

Used by `devstack.up`, the test fixture (tests/fixtures/servicebus.py) and bench/. The connection
string has the same shape as the official Docker emulator's, so code reading it works with both.
"""

from __future__ import annotations

import os
from pathlib import Path

from devstack.processes import ManagedProcess, free_port, python_module
from devstack.servicebus.topology import DEFAULT_TOPOLOGY


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    """`UseDevelopmentEmulator=true` makes the SDK use plain AMQP over TCP and accept any key."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
    )


def emulator_process(
    port: int | None = None,
    config: Path | str | None = None,
    *,
    log_level: str = "INFO",
    name: str = "servicebus",
) -> ManagedProcess:
    """The emulator on `port` (a free one if None) with `config` (the shipped topology if None); call
    `.start()` (or use it as a context manager) and it is ready once the port accepts connections."""
    port = port or free_port()
    argv = python_module(
        "devstack.servicebus",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config or DEFAULT_TOPOLOGY),
        "--log-level",
        log_level,
        "--parent-pid",
        str(os.getpid()),
    )
    return ManagedProcess(name, argv, port=port)
