"""Map-mode catch-up end to end: a paused map's parked changes caught up on resume, against the initial sync.

    .venv/bin/python -m bench.catch_up [--records 2000] [--changes 10000] [--timeout 1800] [--host-log PATH]

Starts the whole stack on free ports as bench.initial_sync does (Azurite in memory, the Service Bus
emulator, both simulators seeded, the Functions host serving function_app.py), loads `--records` customers
straight into the F&O simulator (its admin load path fires no events) and runs an initial sync of the
customers map from F&O through the management API: its rows read/s is the yardstick of the run. Then it
pauses the map, makes `--changes` F&O renames over the records (round robin, every value distinct, `$batch`
of 100 with each write in its own changeset) and waits until all of them are parked (F&O data events ->
ingest -> changes queue -> the worker parks them, coalesced per record). Then it resets the simulators'
stats, resumes the map and waits until the map runs again with nothing parked and every account in
Dataverse holds its record's last name. Catch-up: records/s (records / resume -> all equal), Dataverse
writes (the simulator's count: one per record expected), the host's CPU per 1,000 records; and
`ratio_to_initial_sync` = catch-up records/s over the initial sync's rows/s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.initial_sync import MASTER_KEY, fno_rows, load, sync_run
from bench.live_sync import (
    HEADERS,
    Meter,
    Stack,
    TableCounter,
    engine_traffic,
    fno_key,
    poll_dataverse,
    start_host,
    start_simulators,
    tree_cpu_seconds,
)
from core.connectors.batch import BatchOp, build_batch, parse_batch
from devstack.up import wait_for_deployment

MODES = "/api/manage/v1/modes/customers"
BATCH = 100
POLL = 0.5


class Misbehaved(Exception):
    """The engine did not do what the bench waits for within the timeout."""


def mode_view(admin: httpx.Client) -> dict[str, Any]:
    response = admin.get(MODES)
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view


def act(admin: httpx.Client, action: str, reason: str = "bench") -> dict[str, Any]:
    response = admin.post(f"{MODES}/{action}", json={"reason": reason})
    if response.status_code not in (200, 202):
        raise Misbehaved(f"{action}: {response.status_code} {response.text[:500]}")
    view: dict[str, Any] = response.json()
    return view


def quiet(client: httpx.Client, stack: Stack, meter: Meter) -> float:
    """Seconds until both simulators have delivered their events and the engine is idle."""
    started = time.perf_counter()
    client.post(f"{stack.dataverse}/_sim/drain", timeout=300).raise_for_status()
    client.post(f"{stack.fno}/admin/drain", timeout=300).raise_for_status()
    meter.settle(quiet=2.0)
    return round(time.perf_counter() - started, 1)


def send_changes(client: httpx.Client, stack: Stack, accounts: list[str], changes: int) -> dict[str, str]:
    """`changes` renames in F&O, round robin over the accounts, as `$batch` of BATCH (each write its own
    changeset); each account's last value."""
    last: dict[str, str] = {}
    for start in range(0, changes, BATCH):
        ops = []
        for n in range(start, min(start + BATCH, changes)):
            account = accounts[n % len(accounts)]
            last[account] = f"Change {n} {account}"
            ops.append(BatchOp("PATCH", fno_key("usmf", account), {"OrganizationName": last[account]}))
        content_type, body = build_batch(ops, each_write_atomic=True)
        for _ in range(120):
            response = client.post(f"{stack.fno}/data/$batch", content=body, headers={"Content-Type": content_type})
            if response.status_code not in (429, 503):
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        response.raise_for_status()
        failed = [r for r in parse_batch(response.headers["Content-Type"], response.content) if not r.ok]
        if failed:
            raise SystemExit(f"F&O refused {len(failed)} of a $batch's writes: {failed[0].body_text[:300]}")
    return last


def wait_parked(admin: httpx.Client, changes: int, timeout: float) -> tuple[dict[str, Any], float]:
    """The mode view once `parked.changes` reached `changes`, and when (perf_counter)."""
    deadline = time.monotonic() + timeout
    view = mode_view(admin)
    while view["parked"]["changes"] < changes:
        if time.monotonic() > deadline:
            raise Misbehaved(f"{view['parked']['changes']} of {changes} changes parked after {timeout:.0f} s")
        time.sleep(POLL)
        view = mode_view(admin)
    return view, time.perf_counter()


def wait_caught_up(admin: httpx.Client, client: httpx.Client, stack: Stack, prefix: str, last: dict[str, str],
                   started: float, timeout: float) -> dict[str, Any]:
    """Poll the mode until running with nothing parked, and Dataverse until every account holds its last
    name; seconds from `started` (the resume) to each, and to both."""
    deadline = time.monotonic() + timeout
    mode_at: float | None = None
    equal_at: float | None = None
    differing = len(last)
    view: dict[str, Any] = {}
    while mode_at is None or equal_at is None:
        now = time.perf_counter()
        view = mode_view(admin)
        if mode_at is None and view["mode"] == "running" and view["parked"]["records"] == 0:
            mode_at = now
        if equal_at is None:
            names = poll_dataverse(client, stack, prefix)
            differing = sum(1 for account, name in last.items() if names.get(account) != name)
            if not differing:
                equal_at = now
        if mode_at is None or equal_at is None:
            if time.monotonic() > deadline:
                raise Misbehaved(f"not caught up after {timeout:.0f} s: mode {view.get('mode')}, parked "
                                 f"{view.get('parked')}, {differing} of {len(last)} accounts without their last name")
            time.sleep(POLL)
    return {"mode_running_s": round(mode_at - started, 2), "dataverse_equal_s": round(equal_at - started, 2),
            "seconds": round(max(mode_at, equal_at) - started, 2), "view": view}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.catch_up", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="customers loaded, synced, then changed")
    parser.add_argument("--changes", type=int, default=10_000, help="F&O renames made while the map is paused")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds each wait may take")
    parser.add_argument("--host-log", type=Path, help="copy the Functions host's log here")
    args = parser.parse_args(argv)
    if args.records <= 0 or args.changes < args.records:
        parser.error("--records must be positive and --changes at least --records (every record changed)")
    prefix = f"C{uuid.uuid4().hex[:4].upper()}"
    out: dict[str, Any] = {"benchmark": "catch_up", "records": args.records, "changes": args.changes}
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="bench-catch-up-") as tmp:
        folder = Path(tmp)
        stack = start_simulators(folder, tables_in_memory=True)  # as bench.initial_sync: see why there
        try:
            settings = start_host(stack, folder)
            wait_for_deployment(settings, threading.Event(), dataverse=stack.dataverse, fno=stack.fno)
            host = stack.processes[-1].proc
            assert host is not None
            with httpx.Client(headers=HEADERS, timeout=120) as client, \
                    httpx.Client(base_url=stack.host, headers={"x-functions-key": MASTER_KEY}, timeout=60) as admin:
                meter = Meter(client, stack, host.pid, TableCounter(stack.azurite_log))
                try:
                    # 1. the yardstick: an initial sync of the loaded records
                    load(f"{stack.fno}/admin/load", {"entity": "CustomersV3", "rows": fno_rows(prefix, args.records)})
                    initial = sync_run(admin, "fno", host.pid, args.timeout)
                    out["initial_sync"] = {"rows_per_s": initial["rows_per_s"], "seconds": initial["seconds"],
                                           "read": initial["read"], "written": initial["written"],
                                           "status": initial["status"]}
                    if initial["status"] != "completed" or initial["written"] < args.records:
                        raise Misbehaved(f"initial sync {initial['status']}, {initial['written']} written")
                    accounts = [row["CustomerAccount"] for row in fno_rows(prefix, args.records)]
                    synced = poll_dataverse(client, stack, prefix)
                    if len(synced) != args.records:
                        raise Misbehaved(f"{len(synced)} of {args.records} accounts in Dataverse after the sync")
                    settled = quiet(client, stack, meter)  # the initial sync's echoes are not parked with the changes
                    # 2. pause
                    act(admin, "pause")
                    time.sleep(3)  # every instance's cached mode has expired (2 s)
                    # 3. the changes, parked
                    started = time.perf_counter()
                    last = send_changes(client, stack, accounts, args.changes)
                    written = time.perf_counter()
                    view, parked_at = wait_parked(admin, args.changes, args.timeout)
                    time.sleep(2 * POLL)
                    view = mode_view(admin)  # anything parked beyond the changes shows here
                    parking = round(parked_at - started, 2)
                    out["parking"] = {"changes_per_s": round(args.changes / parking, 1), "seconds": parking,
                                      "source_writes_per_s": round(args.changes / (written - started), 1),
                                      "parked": view["parked"], "quiet_before_pause_s": settled}
                    if view["parked"] != {"records": args.records, "changes": args.changes}:
                        print(f"parked beyond the changes: {view['parked']}", file=sys.stderr)
                    # 4. resume, caught up
                    for url in (f"{stack.fno}/admin/stats/reset", f"{stack.dataverse}/_sim/stats/reset"):
                        client.post(url).raise_for_status()
                    cpu_before = tree_cpu_seconds(host.pid)
                    resumed = time.perf_counter()
                    act(admin, "resume")
                    done = wait_caught_up(admin, client, stack, prefix, last, resumed, args.timeout)
                    cpu = tree_cpu_seconds(host.pid) - cpu_before
                    settle_s = meter.settle(quiet=2.0)  # late writes (a record written twice) count too
                    cpu_settled = tree_cpu_seconds(host.pid) - cpu_before
                    dataverse = client.get(f"{stack.dataverse}/_sim/stats", params={"records": "false"}).json()
                    fno = client.get(f"{stack.fno}/admin/stats", params={"records": "false"}).json()
                    view = mode_view(admin)
                    seconds = done["seconds"]
                    out["catch_up"] = {
                        "records_per_s": round(args.records / seconds, 1), "seconds": seconds,
                        "mode_running_s": done["mode_running_s"], "dataverse_equal_s": done["dataverse_equal_s"],
                        "dataverse_writes": dataverse["writes"]["total"],
                        "dataverse_max_writes_per_record": dataverse["writes"]["max_per_record"],
                        "dataverse_engine_requests": engine_traffic(dataverse),
                        "fno_writes": fno["writes"]["total"],
                        "cpu_s": round(cpu, 2), "cpu_s_per_1000": round(cpu / args.records * 1000, 2),
                        "cpu_s_per_1000_incl_settle": round(cpu_settled / args.records * 1000, 2),
                        "settle_s": settle_s, "engine_view": view.get("catch_up"), "parked_after": view["parked"]}
                    out["ratio_to_initial_sync"] = round(out["catch_up"]["records_per_s"]
                                                         / out["initial_sync"]["rows_per_s"], 3)
                    print(f"catch-up: {args.records} records in {seconds} s, {out['catch_up']['dataverse_writes']} "
                          "Dataverse writes", file=sys.stderr)
                except Misbehaved as error:
                    failure = str(error)
                    out["error"] = failure
                    try:
                        seen = mode_view(admin)
                        out["mode_view"] = {**seen, "transitions": seen.get("transitions", [])[:5]}
                    except httpx.HTTPError as unreachable:
                        out["mode_view"] = f"unreadable: {unreachable}"
                    print(f"the engine misbehaved: {failure}\nthe host's log, last lines:\n"
                          f"{stack.processes[-1].log_tail(60)}", file=sys.stderr)
        finally:
            stack.stop()
            if args.host_log:
                args.host_log.write_text(stack.processes[-1].log_path.read_text(errors="replace"))
    out["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    print(json.dumps(out, indent=2))
    if failure:
        sys.exit(1)


if __name__ == "__main__":
    main()
