"""Live sync end to end: changes written through each simulator's own API, until visible on the other side.

    .venv/bin/python -m bench.live_sync [--rounds 5] [--raw-writes 100] [--timeout 60]

Starts the whole stack on free ports (Azurite, the Service Bus emulator, both simulators seeded, the
Functions host serving function_app.py), first measures the raw single-write rate of each simulator
(sequential PATCHes, before the host exists, so no event fires), then starts the host, waits for it
to deploy the maps, and runs rounds: each round renames a set of customers in F&O (OrganizationName)
and a disjoint set of accounts in Dataverse (name), then polls both sides in bulk every
`--poll` seconds until each new name shows up on the other side. Latency is source write answered ->
first poll that sees the value (resolution: the poll interval; Dataverse modifiedon has whole
seconds only, so it would be coarser). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.azurite import azurite_table, connection_string
from devstack.processes import ROOT, ManagedProcess, free_port, python_module
from devstack.servicebus.launch import emulator_process
from devstack.up import LOCAL_TOKEN, wait_for_deployment

HEADERS = {"Authorization": f"Bearer {LOCAL_TOKEN}", "Accept": "application/json", "OData-Version": "4.0"}
# Records present on both sides in the seeds; F&O-sourced and Dataverse-sourced changes use disjoint ones.
# Dataverse-sourced ones must have a primary contact that F&O knows (its seed has USC0010..USC0040, the
# primary contacts of US-001..US-004), or their apply waits for the lookup and ends in the error log.
FROM_DATAVERSE = [("usmf", f"US-{i:03d}") for i in range(1, 5)] + [("demf", "DE-003"), ("demf", "DE-004")]
FROM_FNO = [("usmf", f"US-{i:03d}") for i in range(5, 11)] + [("demf", "DE-001"), ("demf", "DE-002")]


@dataclass
class Stack:
    dataverse: str
    fno: str
    table_port: int
    bus_port: int
    processes: list[ManagedProcess]
    host: str = ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_simulators(folder: Path) -> Stack:
    processes: list[ManagedProcess] = []
    table_port, bus_port, dv_port, fno_port = (free_port() for _ in range(4))
    processes.append(azurite_table(table_port, location=folder / "azurite").start(ready_timeout=60))
    processes.append(emulator_process(port=bus_port, log_level="WARNING").start(ready_timeout=60))
    processes.append(ManagedProcess("bench-dataverse", python_module(
        "devstack.dataverse", "--port", str(dv_port), "--seed", "on"), port=dv_port, log_dir=folder).start(60))
    processes.append(ManagedProcess("bench-fno", python_module(
        "devstack.fno", "--port", str(fno_port), "--seed", "on"), port=fno_port, log_dir=folder).start(60))
    return Stack(f"http://127.0.0.1:{dv_port}", f"http://127.0.0.1:{fno_port}", table_port, bus_port, processes)


def start_host(stack: Stack, folder: Path) -> dict[str, str]:
    port = free_port()
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    values: dict[str, str] = sample["Values"]
    values.update({
        "AzureWebJobsStorage": connection_string(stack.table_port),
        "TABLE_STORAGE_CONNECTION": connection_string(stack.table_port),
        "SERVICEBUS_CONNECTION": f"Endpoint=sb://127.0.0.1:{stack.bus_port};SharedAccessKeyName=RootManageSharedAccessKey;"
                                 "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        "DATAVERSE_URL": stack.dataverse, "FNO_URL": stack.fno, "APP_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
    })
    settings = folder / "local.settings.json"
    settings.write_text(json.dumps(sample, indent=2))
    stack.host = f"http://127.0.0.1:{port}"
    stack.processes.append(ManagedProcess("bench-host", python_module(
        "devstack.host", "--port", str(port), "--settings", str(settings)), port=port, log_dir=folder).start(60))
    return values


def fno_key(company: str, account: str) -> str:
    # cross-company: key access to a row of another company than the caller's default is a 404 without it
    return f"CustomersV3(dataAreaId='{company}',CustomerAccount='{account}')?cross-company=true"


def account_ids(client: httpx.Client, dataverse: str) -> dict[str, str]:
    rows = client.get(f"{dataverse}/api/data/v9.2/accounts", params={"$select": "accountid,accountnumber"}).json()
    return {r["accountnumber"]: r["accountid"] for r in rows["value"]}


def raw_rates(client: httpx.Client, stack: Stack, writes: int) -> dict[str, float]:
    ids = account_ids(client, stack.dataverse)
    accounts = [ids[a] for _, a in FROM_DATAVERSE]
    started = time.perf_counter()
    for i in range(writes):
        client.patch(f"{stack.dataverse}/api/data/v9.2/accounts({accounts[i % len(accounts)]})",
                     json={"name": f"raw {i}"}).raise_for_status()
    dataverse_rate = writes / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(writes):
        company, account = FROM_FNO[i % len(FROM_FNO)]
        client.patch(f"{stack.fno}/data/{fno_key(company, account)}",
                     json={"OrganizationName": f"raw {i}"}).raise_for_status()
    fno_rate = writes / (time.perf_counter() - started)
    return {"dataverse_single_writes_per_s": round(dataverse_rate, 1), "fno_single_writes_per_s": round(fno_rate, 1)}


def names_in_dataverse(client: httpx.Client, stack: Stack) -> dict[str, str]:
    rows = client.get(f"{stack.dataverse}/api/data/v9.2/accounts", params={"$select": "name,accountnumber"}).json()
    return {r["accountnumber"]: r.get("name") or "" for r in rows["value"]}


def names_in_fno(client: httpx.Client, stack: Stack) -> dict[str, str]:
    rows = client.get(f"{stack.fno}/data/CustomersV3", params={
        "cross-company": "true", "$select": "dataAreaId,CustomerAccount,OrganizationName"}).json()
    return {r["CustomerAccount"]: r.get("OrganizationName") or "" for r in rows["value"]}


def run_round(client: httpx.Client, stack: Stack, ids: dict[str, str], tag: str, timeout: float,
              poll: float) -> tuple[dict[str, list[float]], dict[str, int]]:
    """One round of writes on both sides; per target side, the latencies of the changes seen and the
    count not seen in time."""
    pending: dict[tuple[str, str], tuple[str, float]] = {}  # (target side, account) -> (value, written at)
    for company, account in FROM_FNO:
        value = f"{tag} F&O {account}"
        client.patch(f"{stack.fno}/data/{fno_key(company, account)}", json={"OrganizationName": value}
                     ).raise_for_status()
        pending[("dataverse", account)] = (value, time.perf_counter())
    for _, account in FROM_DATAVERSE:
        value = f"{tag} DV {account}"
        client.patch(f"{stack.dataverse}/api/data/v9.2/accounts({ids[account]})", json={"name": value}
                     ).raise_for_status()
        pending[("fno", account)] = (value, time.perf_counter())
    latencies: dict[str, list[float]] = {"dataverse": [], "fno": []}
    deadline = time.perf_counter() + timeout
    while pending and time.perf_counter() < deadline:
        seen_at = time.perf_counter()
        current = {"dataverse": names_in_dataverse(client, stack), "fno": names_in_fno(client, stack)}
        for (side, account), (value, written) in list(pending.items()):
            if current[side].get(account) == value:
                latencies[side].append(seen_at - written)
                del pending[(side, account)]
        if pending:
            time.sleep(poll)
    return latencies, {side: sum(1 for s, _ in pending if s == side) for side in ("dataverse", "fno")}


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--raw-writes", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a round waits for its changes")
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args(argv)
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-live-sync-") as tmp:
        folder = Path(tmp)
        stack = start_simulators(folder)
        try:
            with httpx.Client(headers=HEADERS, timeout=30) as client:
                raw = raw_rates(client, stack, args.raw_writes)
                settings = start_host(stack, folder)
                deployed = wait_for_deployment(settings, threading.Event(), dataverse=stack.dataverse,
                                               fno=stack.fno)
                ids = account_ids(client, stack.dataverse)
                by_side: dict[str, list[float]] = {"dataverse": [], "fno": []}
                missed_by_side = {"dataverse": 0, "fno": 0}
                started = time.perf_counter()
                for round_number in range(args.rounds):
                    got, lost = run_round(client, stack, ids, f"bench {run} r{round_number}", args.timeout, args.poll)
                    for side in by_side:
                        by_side[side] += got[side]
                        missed_by_side[side] += lost[side]
                elapsed = time.perf_counter() - started
                if any(missed_by_side.values()):  # say why on stderr; stdout stays one JSON object
                    log = stack.processes[-1].log_path.read_text(errors="replace").splitlines()
                    problems = [line for line in log if " WARNING " in line or " ERROR " in line]
                    print("changes not seen in time; the host's warnings and errors:", *problems[-30:],
                          sep="\n", file=sys.stderr)
        finally:
            stack.stop()
    latencies = by_side["dataverse"] + by_side["fno"]
    missed = sum(missed_by_side.values())
    applied_rate = len(latencies) / elapsed if elapsed else 0.0
    result: dict[str, Any] = {
        "benchmark": "live_sync",
        "python": platform.python_version(),
        "deployed": deployed,
        "changes_written": len(latencies) + missed,
        "changes_applied": len(latencies),
        "changes_not_seen_in_time": missed,
        "applied_per_s": round(applied_rate, 2),
        "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                       "p99": percentile(latencies, 0.99), "resolution_ms": round(args.poll * 1000)},
        "by_direction": {
            f"{'fno' if side == 'dataverse' else 'dataverse'}_to_{side}": {
                "applied": len(by_side[side]), "not_seen_in_time": missed_by_side[side],
                "latency_ms_p50": percentile(by_side[side], 0.50), "latency_ms_p95": percentile(by_side[side], 0.95)}
            for side in ("dataverse", "fno")},
        "raw": raw,
        "ratios": {
            "applied_vs_dataverse_single_writes": round(applied_rate / raw["dataverse_single_writes_per_s"], 4),
            "applied_vs_fno_single_writes": round(applied_rate / raw["fno_single_writes_per_s"], 4),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
