"""Live sync end to end: changes written through each simulator's own API, until visible on the other side.

    .venv/bin/python -m bench.live_sync [--changes 200] [--workers 8] [--timeout 120] [--host-log PATH]

Starts the whole stack on free ports (Azurite, the Service Bus emulator, both simulators seeded, the
Functions host serving function_app.py), first measures the raw single-write rate of each simulator
(sequential PATCHes, before the host exists, so no event fires), then starts the host, waits for it
to deploy the maps, and runs three phases of N records written from several threads: customers
created in F&O, renamed in F&O, then their accounts renamed in Dataverse. Each phase polls the other
side in bulk until every value shows up. Latency is source write answered -> first poll that sees
the value (resolution: the poll interval). Prints one JSON object; bench/README.md explains it.
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
from concurrent.futures import ThreadPoolExecutor
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
        "LOG_LEVEL": "INFO",
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


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


@dataclass
class Phase:
    """N writes on one side, each expected to show up with a value on the other side."""

    name: str
    target: str  # the side polled
    writes: list[tuple[str, str, Any]]  # (record, value expected on the target, the write itself)


def poll_dataverse(client: httpx.Client, stack: Stack, prefix: str) -> dict[str, str]:
    rows = client.get(f"{stack.dataverse}/api/data/v9.2/accounts", params={
        "$select": "name,accountnumber", "$filter": f"startswith(accountnumber,'{prefix}')"}).json()
    return {r["accountnumber"]: r.get("name") or "" for r in rows["value"]}


def poll_fno(client: httpx.Client, stack: Stack, prefix: str) -> dict[str, str]:
    rows = client.get(f"{stack.fno}/data/CustomersV3", params={
        "cross-company": "true", "$select": "CustomerAccount,OrganizationName",
        "$filter": f"CustomerAccount eq '{prefix}*'"}).json()
    return {r["CustomerAccount"]: r.get("OrganizationName") or "" for r in rows["value"]}


def run_phase(client: httpx.Client, stack: Stack, phase: Phase, prefix: str, *, workers: int, timeout: float,
              poll: float) -> dict[str, Any]:
    """Fire the phase's writes from `workers` threads (as many users would), then poll the other side
    until every expected value is there; per record: source write answered -> first poll seeing it."""
    written: dict[str, float] = {}
    expected = {record: value for record, value, _ in phase.writes}
    lock = threading.Lock()

    def write(item: tuple[str, str, Any]) -> None:
        record, _, action = item
        action()
        with lock:
            written[record] = time.perf_counter()

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, phase.writes))
    writes_done = time.perf_counter()
    seen: dict[str, float] = {}
    deadline = writes_done + timeout
    read = poll_dataverse if phase.target == "dataverse" else poll_fno
    while len(seen) < len(expected) and time.perf_counter() < deadline:
        now = time.perf_counter()
        for record, value in read(client, stack, prefix).items():
            if record not in seen and expected.get(record) == value:
                seen[record] = now
        if len(seen) < len(expected):
            time.sleep(poll)
    latencies = [seen[r] - written[r] for r in seen]
    last = max(seen.values(), default=writes_done)
    return {
        "changes": len(expected), "applied": len(seen), "not_seen_in_time": len(expected) - len(seen),
        "source_writes_per_s": round(len(expected) / (writes_done - started), 1),
        "applied_per_s": round(len(seen) / (last - started), 1) if seen else 0.0,
        "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                       "p99": percentile(latencies, 0.99)},
    }


def phases(client: httpx.Client, stack: Stack, prefix: str, count: int) -> list[Any]:
    """Creates in F&O, then updates in F&O, then updates in Dataverse of the same records (built lazily:
    the Dataverse ids exist only after the creates have synced)."""
    records = [f"{prefix}{i:04d}" for i in range(count)]

    def fno_create(record: str) -> Any:
        return lambda: client.post(f"{stack.fno}/data/CustomersV3", json={
            "dataAreaId": "usmf", "CustomerAccount": record, "OrganizationName": f"new {record}",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD"}).raise_for_status()

    def fno_rename(record: str) -> Any:
        return lambda: client.patch(f"{stack.fno}/data/{fno_key('usmf', record)}",
                                    json={"OrganizationName": f"F&O {record}"}).raise_for_status()

    def dataverse_rename(row_id: str, record: str) -> Any:
        return lambda: client.patch(f"{stack.dataverse}/api/data/v9.2/accounts({row_id})",
                                    json={"name": f"DV {record}"}).raise_for_status()

    yield Phase("fno_creates_to_dataverse", "dataverse", [(r, f"new {r}", fno_create(r)) for r in records])
    yield Phase("fno_updates_to_dataverse", "dataverse", [(r, f"F&O {r}", fno_rename(r)) for r in records])
    ids = {number: row_id for number, row_id in account_ids(client, stack.dataverse).items() if number in records}
    yield Phase("dataverse_updates_to_fno", "fno",
                [(r, f"DV {r}", dataverse_rename(ids[r], r)) for r in records if r in ids])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200, help="records per phase")
    parser.add_argument("--workers", type=int, default=8, help="threads writing to the source (users)")
    parser.add_argument("--raw-writes", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a phase waits for its changes")
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--host-log", type=Path, help="copy the Functions host's log here (where the time goes)")
    args = parser.parse_args(argv)
    prefix = f"B{uuid.uuid4().hex[:5].upper()}"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-live-sync-") as tmp:
        folder = Path(tmp)
        stack = start_simulators(folder)
        try:
            with httpx.Client(headers=HEADERS, timeout=60,
                              limits=httpx.Limits(max_connections=args.workers + 4)) as client:
                raw = raw_rates(client, stack, args.raw_writes)
                settings = start_host(stack, folder)
                deployed = wait_for_deployment(settings, threading.Event(), dataverse=stack.dataverse,
                                               fno=stack.fno)
                for phase in phases(client, stack, prefix, args.changes):
                    results[phase.name] = run_phase(client, stack, phase, prefix, workers=args.workers,
                                                    timeout=args.timeout, poll=args.poll)
            if any(r["not_seen_in_time"] for r in results.values()):  # say why on stderr; stdout stays JSON
                log = stack.processes[-1].log_path.read_text(errors="replace").splitlines()
                problems = [line for line in log if " WARNING " in line or " ERROR " in line]
                print("changes not seen in time; the host's warnings and errors:", *problems[-30:],
                      sep="\n", file=sys.stderr)
        finally:
            stack.stop()
            if args.host_log:
                args.host_log.write_text(stack.processes[-1].log_path.read_text(errors="replace"))
    best = max((r["applied_per_s"] for r in results.values()), default=0.0)
    print(json.dumps({
        "benchmark": "live_sync",
        "python": platform.python_version(),
        "deployed": deployed,
        "changes_per_phase": args.changes,
        "source_writers": args.workers,
        "latency_resolution_ms": round(args.poll * 1000),
        "phases": results,
        "raw": raw,
        "ratios": {
            "best_applied_vs_dataverse_single_writes": round(best / raw["dataverse_single_writes_per_s"], 4),
            "best_applied_vs_fno_single_writes": round(best / raw["fno_single_writes_per_s"], 4),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
