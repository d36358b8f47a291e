"""Live sync end to end: changes written through each simulator's own API, until visible on the other side.

    .venv/bin/python -m bench.live_sync [--changes 200] [--bursts 1000,10000] [--workers 8] [--timeout 120]
                                        [--burst-timeout 900] [--host-log PATH]

Starts the whole stack on free ports (Azurite, the Service Bus emulator, both simulators seeded, the
Functions host serving function_app.py), first measures the raw single-write rate of each simulator
(sequential PATCHes, before the host exists, so no event fires), then starts the host, waits for it
to deploy the maps, and runs three phases of N records written from several threads: customers
created in F&O, renamed in F&O, then their accounts renamed in Dataverse. Each phase polls the other
side in bulk until every value shows up. Then, per `--bursts` size N, two burst phases: N customers
created in F&O (to Dataverse), then the same N accounts renamed in Dataverse (to F&O). Latency is source
write answered -> first poll that sees the value (resolution: the poll interval). Every phase also
reports what the engine spent on it: CPU seconds of the Functions host (its process tree, /proc), HTTP
requests on each simulator (their /_sim/stats and /admin/stats, the bench's own callers left out) and
Table Storage requests (Azurite's access log). Raw rates (single writes and `$batch` changesets of
100) are measured first, before the host exists, so no event fires. Prints one JSON object;
bench/README.md explains it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.azurite import azurite_table, connection_string
from devstack.dataverse.auth import make_token
from devstack.processes import ROOT, ManagedProcess, free_port, python_module
from devstack.servicebus.launch import emulator_process
from devstack.up import LOCAL_TOKEN, wait_for_deployment

HEADERS = {"Authorization": f"Bearer {LOCAL_TOKEN}", "Accept": "application/json", "OData-Version": "4.0"}
# The bench's own callers: LOCAL_TOKEN (polls, raw rates, deployment checks) and one per writer thread (users;
# Dataverse's service protection counts per caller). Their requests are left out of the engine's figures.
BENCH_OID = "6c0c4d4e-2f4a-4c39-9b3a-5d1f0a7e9c11"  # LOCAL_TOKEN's
WRITER_OIDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench.live_sync/writer/{i}")) for i in range(64)]
BENCH_CALLERS = {BENCH_OID, *WRITER_OIDS}
BATCH_ROWS = 100
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
    azurite_log: Path
    host: str = ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def start_simulators(folder: Path, *, tables_in_memory: bool = False) -> Stack:
    processes: list[ManagedProcess] = []
    table_port, bus_port, dv_port, fno_port = (free_port() for _ in range(4))
    azurite = azurite_table(table_port, location=None if tables_in_memory else folder / "azurite")
    azurite.log_path = folder / "azurite-access.log"  # its console access log: one line per request served
    processes.append(azurite.start(ready_timeout=60))
    processes.append(emulator_process(port=bus_port, log_level="WARNING").start(ready_timeout=60))
    processes.append(ManagedProcess("bench-dataverse", python_module(
        "devstack.dataverse", "--port", str(dv_port), "--seed", "on"), port=dv_port, log_dir=folder).start(60))
    processes.append(ManagedProcess("bench-fno", python_module(
        "devstack.fno", "--port", str(fno_port), "--seed", "on"), port=fno_port, log_dir=folder).start(60))
    return Stack(f"http://127.0.0.1:{dv_port}", f"http://127.0.0.1:{fno_port}", table_port, bus_port, processes,
                 azurite.log_path)


def start_host(stack: Stack, folder: Path, **extra: str) -> dict[str, str]:
    """The Functions host over the stack, with the sample settings and `extra` on top (MAPS_PATH, say)."""
    port = free_port()
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    values: dict[str, str] = sample["Values"]
    values.update({
        "AzureWebJobsStorage": connection_string(stack.table_port),
        "TABLE_STORAGE_CONNECTION": connection_string(stack.table_port),
        "SERVICEBUS_CONNECTION": f"Endpoint=sb://127.0.0.1:{stack.bus_port};SharedAccessKeyName=RootManageSharedAccessKey;"
                                 "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        "DATAVERSE_URL": stack.dataverse, "FNO_URL": stack.fno, "APP_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "INFO", **extra,
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


def get_all(client: httpx.Client, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every row of a query, following @odata.nextLink (Dataverse pages at 5,000 rows)."""
    rows: list[dict[str, Any]] = []
    page = client.get(url, params=params)
    while True:
        page.raise_for_status()
        body = page.json()
        rows += body["value"]
        if not body.get("@odata.nextLink"):
            return rows
        page = client.get(body["@odata.nextLink"])


def account_ids(client: httpx.Client, dataverse: str, prefix: str = "") -> dict[str, str]:
    params = {"$select": "accountid,accountnumber"}
    if prefix:
        params["$filter"] = f"startswith(accountnumber,'{prefix}')"
    rows = get_all(client, f"{dataverse}/api/data/v9.2/accounts", params)
    return {r["accountnumber"]: r["accountid"] for r in rows}


def batch_body(boundary: str, requests: list[tuple[str, str, dict[str, Any]]]) -> bytes:
    """One changeset of (method, url, json body) requests."""
    changeset = f"cs_{boundary}"
    parts = "".join(
        f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: {i}\r\n\r\n{method} {url} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
        f"{json.dumps(body)}\r\n"
        for i, (method, url, body) in enumerate(requests, 1)
    )
    return (f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n{parts}"
            f"--{changeset}--\r\n--{boundary}--\r\n").encode()


def batched_rate(client: httpx.Client, url: str, batches: int,
                 build: Any) -> float:
    """Rows/s through `$batch` changesets of BATCH_ROWS writes, sequential (what one client gets)."""
    started = time.perf_counter()
    for b in range(batches):
        boundary = f"batch_{b}"
        response = client.post(url, content=batch_body(boundary, build(b)),
                               headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        response.raise_for_status()
        if response.text.count("HTTP/1.1 204") != BATCH_ROWS:
            raise RuntimeError(f"a raw $batch did not write {BATCH_ROWS} rows: {response.text[:400]}")
    return batches * BATCH_ROWS / (time.perf_counter() - started)


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
    batches = max(1, writes // 20)
    dataverse_batched = batched_rate(client, f"{stack.dataverse}/api/data/v9.2/$batch", batches, lambda b: [
        ("PATCH", f"/api/data/v9.2/accounts({accounts[i % len(accounts)]})", {"name": f"raw batch {b}-{i}"})
        for i in range(BATCH_ROWS)])
    fno_batched = batched_rate(client, f"{stack.fno}/data/$batch", batches, lambda b: [
        ("PATCH", fno_key(*FROM_FNO[i % len(FROM_FNO)]), {"OrganizationName": f"raw batch {b}-{i}"})
        for i in range(BATCH_ROWS)])
    return {"dataverse_single_writes_per_s": round(dataverse_rate, 1), "fno_single_writes_per_s": round(fno_rate, 1),
            "dataverse_batched_rows_per_s": round(dataverse_batched, 1),
            "fno_batched_rows_per_s": round(fno_batched, 1), "batch_rows": BATCH_ROWS}


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


# ---- what the engine spends ---------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ACCESS_LINE = re.compile(rb'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')


def tree_total(root: int, measure: Callable[[str], tuple[int, float]]) -> float:
    """The sum of `measure(pid)` (-> parent pid, value; from /proc/<pid>/...) over a process and its live
    descendants (worker processes)."""
    parents: dict[int, int] = {}
    values: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parents[int(entry)], values[int(entry)] = measure(entry)
        except (OSError, ValueError, IndexError):
            continue  # gone in between
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += values.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def _cpu(pid: str) -> tuple[int, float]:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and its live descendants, plus what their finished children used
    (cutime/cstime), from /proc/<pid>/stat."""
    return tree_total(root, _cpu)


class TableCounter:
    """Requests Azurite served, from its access log (one line per HTTP request; a batch transaction is one)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.counts: Counter[str] = Counter()  # "<method> <table>[ <map>]": where the requests go

    def read(self) -> TableCounter:
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        self.counts.update(f"{method.decode()} {_table_of(path.decode())}"
                           for method, path, _ in ACCESS_LINE.findall(complete))
        return self

    def totals(self) -> tuple[int, int, dict[str, int]]:
        """Requests, of which transactions (`$batch`), and requests by method."""
        counts = self.read().counts
        methods: Counter[str] = Counter()
        for name, n in counts.items():
            methods[name.split(" ", 1)[0]] += n
        batches = sum(n for name, n in counts.items() if name.split(" ")[1] == "$batch")
        return sum(counts.values()), batches, dict(methods)

    def tables(self) -> dict[str, int]:
        return dict(self.read().counts)


def _table_of(path: str) -> str:
    """`/devstoreaccount1/links(PartitionKey='customers%7Cp07',...)` -> `links customers` (the table, and the map
    its partition names when it names one); a transaction is `$batch`."""
    tail = path.split("?", 1)[0].strip("/").split("/", 1)[-1]
    table = re.split(r"[(/]", tail, maxsplit=1)[0] or "(account)"
    partition = re.search(r"PartitionKey='([^']*)'", urllib.parse.unquote(tail))
    return f"{table} {partition.group(1).split('|')[0]}" if partition and "|" in partition.group(1) else table


def sim_stats(client: httpx.Client, stack: Stack) -> dict[str, dict[str, Any]]:
    return {
        "dataverse": client.get(f"{stack.dataverse}/_sim/stats", params={"records": "false"}).json(),
        "fno": client.get(f"{stack.fno}/admin/stats", params={"records": "false"}).json(),
    }


def engine_traffic(stats: dict[str, Any]) -> dict[str, int]:
    """The requests of every caller that is not the bench (the engine's service principal)."""
    callers = {c: n for c, n in stats["callers"].items() if c not in BENCH_CALLERS}
    return {
        "requests": sum(n.get("requests", 0) for n in callers.values()),
        "batch_operations": sum(n.get("batch_operations", 0) for n in callers.values()),
    }


class Meter:
    """Engine cost of one phase: reset the simulators' stats and take CPU and Azurite counts at the start;
    at the end wait until the engine is quiet (its echoes included), then read the differences."""

    def __init__(self, client: httpx.Client, stack: Stack, host_pid: int, tables: TableCounter) -> None:
        self.client, self.stack, self.host_pid, self.tables = client, stack, host_pid, tables

    def start(self) -> None:
        for url in (f"{self.stack.dataverse}/_sim/stats/reset", f"{self.stack.fno}/admin/stats/reset"):
            self.client.post(url).raise_for_status()
        self.cpu = tree_cpu_seconds(self.host_pid)
        self.table = self.tables.totals()
        self.by_table = self.tables.tables()

    def settle(self, quiet: float = 1.0, limit: float = 60.0) -> float:
        """Seconds until neither simulator nor Azurite saw an engine request for `quiet` seconds."""
        started = time.perf_counter()
        last: Any = None
        while time.perf_counter() - started < limit:
            stats = sim_stats(self.client, self.stack)
            now = ({side: engine_traffic(s) for side, s in stats.items()}, self.tables.totals()[0])
            if now == last:
                break
            last = now
            time.sleep(quiet)
        return round(time.perf_counter() - started, 1)

    def finish(self, applied: int, target: str) -> dict[str, Any]:
        settle = self.settle()
        cpu = tree_cpu_seconds(self.host_pid) - self.cpu
        stats = sim_stats(self.client, self.stack)
        requests, batches, methods = self.tables.totals()
        table_requests = requests - self.table[0]
        table_methods = {m: n - self.table[2].get(m, 0) for m, n in methods.items() if n - self.table[2].get(m, 0)}
        by_table = {t: n - self.by_table.get(t, 0) for t, n in self.tables.tables().items()}
        by_table = dict(sorted(((t, n) for t, n in by_table.items() if n), key=lambda item: -item[1]))
        per = (lambda n: round(n / applied, 3)) if applied else (lambda n: None)
        http = {side: engine_traffic(s) for side, s in stats.items()}
        return {
            "settle_s": settle,
            "cpu_s": round(cpu, 2),
            "cpu_s_per_1000_changes": round(cpu / applied * 1000, 2) if applied else None,
            "http_requests_per_change": {side: per(h["requests"]) for side, h in http.items()},
            "batch_operations_per_change": {side: per(h["batch_operations"]) for side, h in http.items()},
            "http": {side: {**http[side], "throttled_429": stats[side]["requests"]["throttled_429"],
                            "unavailable_503": stats[side]["requests"]["unavailable_503"]} for side in http},
            "target_rows_written": stats[target]["writes"]["total"],
            "target_max_writes_per_record": stats[target]["writes"]["max_per_record"],
            "table_requests": table_requests,
            "table_batch_requests": batches - self.table[1],
            "table_requests_by_method": table_methods,
            "table_requests_by_table": by_table,
            "table_requests_per_change": per(table_requests),
        }


# ---- phases -------------------------------------------------------------------------------------------------

@dataclass
class Phase:
    """N writes on one side, each expected to show up with a value on the other side."""

    name: str
    target: str  # the side polled
    prefix: str  # every record of the phase starts with it
    writes: list[tuple[str, str, Any]]  # (record, value expected on the target, the write itself(headers))
    poll: float


def poll_dataverse(client: httpx.Client, stack: Stack, prefix: str) -> dict[str, str]:
    rows = get_all(client, f"{stack.dataverse}/api/data/v9.2/accounts", {
        "$select": "name,accountnumber", "$filter": f"startswith(accountnumber,'{prefix}')"})
    return {r["accountnumber"]: r.get("name") or "" for r in rows}


def poll_fno(client: httpx.Client, stack: Stack, prefix: str) -> dict[str, str]:
    rows = get_all(client, f"{stack.fno}/data/CustomersV3", {
        "cross-company": "true", "$select": "CustomerAccount,OrganizationName",
        "$filter": f"CustomerAccount eq '{prefix}*'"})
    return {r["CustomerAccount"]: r.get("OrganizationName") or "" for r in rows}


_writer = threading.local()
_writer_count = iter(range(1_000_000))


def writer_headers() -> dict[str, str]:
    """This thread's own caller (one user per writer thread)."""
    if not hasattr(_writer, "headers"):
        oid = WRITER_OIDS[next(_writer_count) % len(WRITER_OIDS)]
        _writer.headers = {"Authorization": f"Bearer {make_token(oid, name='bench writer')}"}
    return _writer.headers


def run_phase(client: httpx.Client, stack: Stack, phase: Phase, meter: Meter, *, workers: int,
              timeout: float) -> dict[str, Any]:
    """Fire the phase's writes from `workers` threads (as many users would), then poll the other side
    until every expected value is there; per record: source write answered -> first poll seeing it."""
    written: dict[str, float] = {}
    expected = {record: value for record, value, _ in phase.writes}
    lock = threading.Lock()

    def write(item: tuple[str, str, Any]) -> None:
        record, _, action = item
        action(writer_headers())
        with lock:
            written[record] = time.perf_counter()

    meter.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, phase.writes))
    writes_done = time.perf_counter()
    seen: dict[str, float] = {}
    deadline = writes_done + timeout
    read = poll_dataverse if phase.target == "dataverse" else poll_fno
    while len(seen) < len(expected) and time.perf_counter() < deadline:
        now = time.perf_counter()
        for record, value in read(client, stack, phase.prefix).items():
            if record not in seen and expected.get(record) == value:
                seen[record] = now
        if len(seen) < len(expected):
            time.sleep(phase.poll)
    latencies = [seen[r] - written[r] for r in seen]
    last = max(seen.values(), default=writes_done)
    applied_per_s = round(len(seen) / (last - started), 1) if seen else 0.0
    return {
        "changes": len(expected), "applied": len(seen), "not_seen_in_time": len(expected) - len(seen),
        "source_writes_per_s": round(len(expected) / (writes_done - started), 1),
        "applied_per_s": applied_per_s,
        "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                       "p99": percentile(latencies, 0.99)},
        "latency_resolution_ms": round(phase.poll * 1000),
        "engine": meter.finish(len(seen), phase.target),
    }


def phases(client: httpx.Client, stack: Stack, prefix: str, count: int, *, names: tuple[str, ...],
           poll: float) -> Any:
    """Creates in F&O, then (if named) updates in F&O, then updates in Dataverse of the same records (built
    lazily: the Dataverse ids exist only after the creates have synced)."""
    width = max(4, len(str(count - 1)))
    records = [f"{prefix}{i:0{width}d}" for i in range(count)]

    def fno_create(record: str) -> Any:
        return lambda headers: client.post(f"{stack.fno}/data/CustomersV3", headers=headers, json={
            "dataAreaId": "usmf", "CustomerAccount": record, "OrganizationName": f"new {record}",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD"}).raise_for_status()

    yield Phase(names[0], "dataverse", prefix, [(r, f"new {r}", fno_create(r)) for r in records], poll)
    if len(names) == 3:
        yield Phase(names[1], "dataverse", prefix, [(r, f"F&O {r}", _fno_renamer(client, stack, r, f"F&O {r}"))
                                                              for r in records], poll)
    ids = account_ids(client, stack.dataverse, prefix)
    yield Phase(names[-1], "fno", prefix, [(r, f"DV {r}", _dataverse_renamer(client, stack, ids[r], f"DV {r}"))
                                       for r in records if r in ids],
                poll)


def _fno_renamer(client: httpx.Client, stack: Stack, record: str, value: str) -> Any:
    return lambda headers: client.patch(f"{stack.fno}/data/{fno_key('usmf', record)}", headers=headers,
                                        json={"OrganizationName": value}).raise_for_status()


def _dataverse_renamer(client: httpx.Client, stack: Stack, row_id: str, value: str) -> Any:
    return lambda headers: client.patch(f"{stack.dataverse}/api/data/v9.2/accounts({row_id})", headers=headers,
                                        json={"name": value}).raise_for_status()


def single_changes(client: httpx.Client, stack: Stack, meter: Meter, prefix: str, count: int) -> dict[str, Any]:
    """One change at a time on a quiet stack, each direction: the latency a user sees for a single edit.
    Each change waits for the previous one (and its echo) to settle first."""
    records = sorted(account_ids(client, stack.dataverse, prefix).items())[:count]
    results: dict[str, Any] = {}
    for name, target in (("single_fno_update_to_dataverse", "dataverse"), ("single_dataverse_update_to_fno", "fno")):
        latencies: list[float] = []
        for n, (record, row_id) in enumerate(records):
            value = f"single {target} {n} {record}"
            action = (_fno_renamer(client, stack, record, value) if target == "dataverse"
                      else _dataverse_renamer(client, stack, row_id, value))
            result = run_phase(client, stack, Phase(name, target, record, [(record, value, action)], 0.01), meter,
                               workers=1, timeout=30)
            if result["latency_ms"]["p50"] is not None:
                latencies.append(result["latency_ms"]["p50"])
        results[name] = {"changes": len(records), "applied": len(latencies),
                         "latency_ms": {"p50": percentile([v / 1000 for v in latencies], 0.5),
                                        "p95": percentile([v / 1000 for v in latencies], 0.95)},
                         "latency_resolution_ms": 10}
    return results


def sizes(text: str) -> list[int]:
    if text.strip().lower() in ("", "none", "0"):
        return []
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1000,10000, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("burst sizes must be positive")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200, help="records per phase of the three base phases")
    parser.add_argument("--bursts", type=sizes, default=[1000, 10000],
                        help="burst sizes (changes per direction), comma separated; 'none' for no bursts")
    parser.add_argument("--workers", type=int, default=8, help="threads writing to the source (users)")
    parser.add_argument("--raw-writes", type=int, default=200,
                        help="single writes per simulator for the raw rates (and a twentieth of it in $batch of 100)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a base phase waits for its changes")
    parser.add_argument("--burst-timeout", type=float, default=900.0,
                        help="seconds a burst phase waits for its changes after the last source write")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval of the base phases (s)")
    parser.add_argument("--burst-poll", type=float, default=0.5,
                        help="poll interval of the burst phases (s; each poll reads every record of the burst)")
    parser.add_argument("--singles", type=int, default=20,
                        help="single changes per direction on a quiet stack, one at a time, after the base phases")
    parser.add_argument("--host-log", type=Path, help="copy the Functions host's log here (where the time goes)")
    args = parser.parse_args(argv)
    if args.workers > len(WRITER_OIDS):
        parser.error(f"--workers at most {len(WRITER_OIDS)}")
    tag = uuid.uuid4().hex[:5].upper()
    results: dict[str, Any] = {}
    singles: dict[str, Any] = {}
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
                host = stack.processes[-1].proc
                assert host is not None
                meter = Meter(client, stack, host.pid, TableCounter(stack.azurite_log))
                plan = [(phases(client, stack, f"B{tag}", args.changes, poll=args.poll, names=(
                    "fno_creates_to_dataverse", "fno_updates_to_dataverse", "dataverse_updates_to_fno")),
                    args.timeout)]
                for n, size in enumerate(args.bursts):
                    plan.append((phases(client, stack, f"X{tag}{n}", size, poll=args.burst_poll, names=(
                        f"burst_{size}_fno_creates_to_dataverse", f"burst_{size}_dataverse_updates_to_fno")),
                        args.burst_timeout))
                for index, (built, timeout) in enumerate(plan):
                    for phase in built:
                        results[phase.name] = run_phase(client, stack, phase, meter, workers=args.workers,
                                                        timeout=timeout)
                        print(f"{phase.name}: {results[phase.name]['applied']} of {results[phase.name]['changes']}"
                              f" applied, {results[phase.name]['applied_per_s']}/s", file=sys.stderr)
                    if index == 0 and args.singles:
                        singles = single_changes(client, stack, meter, f"B{tag}", args.singles)
                        for name, result in singles.items():
                            print(f"{name}: p50 {result['latency_ms']['p50']} ms", file=sys.stderr)
            if any(r["not_seen_in_time"] for r in results.values()):  # say why on stderr; stdout stays JSON
                log = stack.processes[-1].log_path.read_text(errors="replace").splitlines()
                problems = [line for line in log if " WARNING " in line or " ERROR " in line]
                print("changes not seen in time; the host's warnings and errors:", *problems[-30:],
                      sep="\n", file=sys.stderr)
        finally:
            stack.stop()
            if args.host_log:
                args.host_log.write_text(stack.processes[-1].log_path.read_text(errors="replace"))
    raw_for = {"dataverse": raw["dataverse_batched_rows_per_s"], "fno": raw["fno_batched_rows_per_s"]}
    for name, result in results.items():
        target = "dataverse" if name.endswith("to_dataverse") else "fno"
        result["applied_vs_target_batched_writes"] = round(result["applied_per_s"] / raw_for[target], 4)
    best = max((r["applied_per_s"] for r in results.values()), default=0.0)
    print(json.dumps({
        "benchmark": "live_sync",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "deployed": deployed,
        "changes_per_phase": args.changes,
        "bursts": args.bursts,
        "source_writers": args.workers,
        "phases": results,
        "single_changes": singles if args.singles else {},
        "raw": raw,
        "ratios": {
            "best_applied_vs_dataverse_single_writes": round(best / raw["dataverse_single_writes_per_s"], 4),
            "best_applied_vs_fno_single_writes": round(best / raw["fno_single_writes_per_s"], 4),
            "best_applied_vs_dataverse_batched_writes": round(best / raw["dataverse_batched_rows_per_s"], 4),
            "best_applied_vs_fno_batched_writes": round(best / raw["fno_batched_rows_per_s"], 4),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
