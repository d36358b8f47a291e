"""Initial sync end to end: N customers F&O -> Dataverse and N accounts Dataverse -> F&O, through the host.

    .venv/bin/python -m bench.initial_sync [--rows 100000] [--small 10000] [--timeout 3600] [--host-log PATH]

Starts the whole stack on free ports (Azurite, the Service Bus emulator, both simulators seeded, the
Functions host serving function_app.py), measures the raw rates of the stores in the path first (before
the host exists): the target's `$batch` of 100 creates and Dataverse's UpsertMultiple of 1,000 (rows/s,
sequential, one client), and Azurite's batch transactions of 100 upserts. Then per direction it loads
the source rows straight into the source simulator (its admin path fires no events), starts an initial
sync of the customers map from that side through the management API, and polls the run until it
completes. First `--small` rows, then `--rows` more (the small set is matched, not written again), so the
host's memory can be compared at both sizes.

Per direction: `rows_per_s` (rows read / run time, start to completed), `written`, engine CPU seconds per
1,000 rows (the host's process tree), the host's peak RSS during each run, and `ratio_to_raw`: rows_per_s
over the slowest raw store in the path measured in the same run. Prints one JSON object.
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
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from azure.data.tables import TableServiceClient, UpdateMode

from bench.live_sync import HEADERS, Stack, batch_body, start_host, start_simulators, tree_cpu_seconds, tree_total
from core.connectors import jsonwire
from devstack.azurite import connection_string
from devstack.up import wait_for_deployment

RUNS = "/api/manage/v1/sync/runs"
MASTER_KEY = "local-master-key"
RAW_BATCHES = 20


def fno_rows(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"dataAreaId": "usmf", "CustomerAccount": f"{prefix}{i:06d}", "OrganizationName": f"Initial {i}",
             "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
             "PaymentTerms": "Net30", "CreditLimit": Decimal("1234.5678901234") + i, "AddressCity": "Redmond",
             # what the map writes to F&O (a constant), so the other direction's run finds these rows equal
             "LanguageId": "en-us"}
            for i in range(count)]


def dataverse_rows(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"name": f"Initial {i}", "accountnumber": f"{prefix}{i:06d}", "customertypecode": 3,
             "creditlimit": Decimal("1234.5678901234") + i, "address1_city": "Redmond",
             "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')",
             "msdyn_customergroupid@odata.bind": "/msdyn_customergroups(msdyn_groupid='10',"
                                                 "_msdyn_company_value=" + company_id_placeholder() + ")",
             "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')"}
            for i in range(count)]


def company_id_placeholder() -> str:
    from devstack.dataverse.seed import seed_id

    return seed_id("cdm_company", "usmf")


def load(url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = httpx.post(url, content=jsonwire.dumps(body), headers={"Content-Type": "application/json"},
                          timeout=900)
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code} {response.text[:500]}")
    return time.perf_counter() - started


# ---- raw rates of the stores in the path --------------------------------------------------------------
def raw_rates(client: httpx.Client, stack: Stack) -> dict[str, float]:
    tag = uuid.uuid4().hex[:4].upper()
    out: dict[str, float] = {}
    company = company_id_placeholder()
    started = time.perf_counter()
    for b in range(RAW_BATCHES):
        boundary = f"batch_{b}"
        # customertypecode 1 (competitor): outside the customers map's filter, so the runs leave these alone
        parts = [("POST", "/api/data/v9.2/accounts", {
            "name": f"raw {b}-{i}", "accountnumber": f"R{tag}{b:03d}{i:03d}", "customertypecode": 1,
            "msdyn_company@odata.bind": f"/cdm_companies({company})"}) for i in range(100)]
        client.post(f"{stack.dataverse}/api/data/v9.2/$batch", content=batch_body(boundary, parts),
                    headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}).raise_for_status()
    out["dataverse_batch_rows_per_s"] = round(RAW_BATCHES * 100 / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    for b in range(RAW_BATCHES // 4):
        targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account",
                    "@odata.id": f"accounts(accountnumber='U{tag}{b:03d}{i:04d}',_msdyn_company_value={company})",
                    "name": f"raw um {b}-{i}", "customertypecode": 1,
                    "msdyn_company@odata.bind": f"/cdm_companies({company})"} for i in range(1000)]
        client.post(f"{stack.dataverse}/api/data/v9.2/accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
                    json={"Targets": targets}).raise_for_status()
    out["dataverse_upsert_multiple_rows_per_s"] = round(RAW_BATCHES // 4 * 1000 / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    for b in range(RAW_BATCHES):
        boundary = f"batch_{b}"
        parts = [("POST", "CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": f"R{tag}{b:03d}{i:03d}",
                                          "OrganizationName": f"raw {b}-{i}", "PartyType": "Person",
                                          "CustomerGroupId": "10"}) for i in range(100)]
        client.post(f"{stack.fno}/data/$batch", content=batch_body(boundary, parts),
                    headers={"Content-Type": f"multipart/mixed; boundary={boundary}"}).raise_for_status()
    out["fno_batch_rows_per_s"] = round(RAW_BATCHES * 100 / (time.perf_counter() - started), 1)
    service = TableServiceClient.from_connection_string(connection_string(stack.table_port))
    table = service.create_table_if_not_exists(f"rawbench{tag.lower()}")
    started = time.perf_counter()
    for b in range(RAW_BATCHES):
        table.submit_transaction([("upsert", {"PartitionKey": "p", "RowKey": f"{b:03d}{i:03d}", "Values": "x" * 400},
                                   {"mode": UpdateMode.REPLACE}) for i in range(100)])
    out["azurite_batch_rows_per_s"] = round(RAW_BATCHES * 100 / (time.perf_counter() - started), 1)
    service.delete_table(table.table_name)
    return out


# ---- the host's memory --------------------------------------------------------------------------------------
def _rss_kb(pid: str) -> tuple[int, float]:
    with open(f"/proc/{pid}/status") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return int(fields["PPid"].strip()), float(fields["VmRSS"].split()[0]) if "VmRSS" in fields else 0.0


def tree_rss_mb(root: int) -> float:
    return round(tree_total(root, _rss_kb) / 1024, 1)


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---- a run -----------------------------------------------------------------------------------------------------
def sync_run(admin: httpx.Client, source: str, host_pid: int, timeout: float) -> dict[str, Any]:
    cpu_before = tree_cpu_seconds(host_pid)
    started = time.perf_counter()
    with PeakRss(host_pid) as rss:
        response = admin.post(RUNS, json={"kind": "initial", "maps": ["customers"], "source": source})
        response.raise_for_status()
        run_id = response.json()["id"]
        deadline = time.monotonic() + timeout
        slow_answers = 0
        while True:
            try:
                run = admin.get(f"{RUNS}/{run_id}").json()
            except httpx.TimeoutException:  # a busy host answers late: say so, and ask again
                slow_answers += 1
                continue
            if run["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    seconds = time.perf_counter() - started
    totals = run["totals"]
    cpu = tree_cpu_seconds(host_pid) - cpu_before
    read = max(1, totals["read"])
    failed_sample = admin.get(f"{RUNS}/{run_id}/drift", params={"kind": "failed", "limit": 3}).json()["items"] \
        if totals["failed"] else []
    print(f"{source}: run {run_id} {run['status']}: {totals['read']} read, {totals['written']} written in "
          f"{seconds:.1f} s", file=sys.stderr)
    return {"run": run_id, "status": run["status"], "seconds": round(seconds, 2), "read": totals["read"],
            "written": totals["written"], "matched": totals["matched"], "failed": totals["failed"],
            "rows_per_s": round(totals["read"] / seconds, 1), "written_per_s": round(totals["written"] / seconds, 1),
            "engine_cpu_s": round(cpu, 2), "engine_cpu_s_per_1000_rows": round(cpu / read * 1000, 3),
            "host_peak_rss_mb": rss.peak, "progress_polls_timed_out": slow_answers,
            "failed_sample": [{"key": f["key"], "error": (f.get("detail") or "")[:300]} for f in failed_sample]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.initial_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per direction (the large run)")
    parser.add_argument("--small", type=int, default=10_000, help="rows of the first, small run per direction "
                        "(0: none); memory is compared between the two")
    parser.add_argument("--reverse-rows", type=int, help="rows of the large Dataverse -> F&O run (default: "
                        "--rows; it is the slower direction)")
    parser.add_argument("--reverse-small", type=int, help="rows of its small run (default: --small)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a run may take")
    parser.add_argument("--host-log", type=Path, help="copy the Functions host's log here")
    args = parser.parse_args(argv)
    tag = uuid.uuid4().hex[:3].upper()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-initial-sync-") as tmp:
        folder = Path(tmp)
        # Azurite in memory: on disk it saves its whole database every few seconds, which at 100,000+ link
        # rows takes a core and most of the run (39 rows/s at 24,000 rows, Azurite at 113 % CPU).
        stack = start_simulators(folder, tables_in_memory=True)
        try:
            with httpx.Client(headers=HEADERS, timeout=120) as client:
                raw = raw_rates(client, stack)
            print(f"raw: {raw}", file=sys.stderr)
            settings = start_host(stack, folder)
            wait_for_deployment(settings, threading.Event(), dataverse=stack.dataverse, fno=stack.fno)
            host = stack.processes[-1].proc
            assert host is not None
            admin = httpx.Client(base_url=stack.host, headers={"x-functions-key": MASTER_KEY}, timeout=60)
            for direction, source in (("fno_to_dataverse", "fno"), ("dataverse_to_fno", "dataverse")):
                runs: dict[str, Any] = {}
                reverse = source == "dataverse"
                sizes = (("small", args.reverse_small if reverse and args.reverse_small is not None else args.small),
                         ("large", args.reverse_rows if reverse and args.reverse_rows is not None else args.rows))
                for size_name, size in sizes:
                    if size <= 0:
                        continue
                    prefix = f"I{tag}{'F' if source == 'fno' else 'D'}{size_name[0].upper()}"
                    if source == "fno":
                        load_s = load(f"{stack.fno}/admin/load", {"entity": "CustomersV3",
                                                                  "rows": fno_rows(prefix, size)})
                    else:
                        load_s = load(f"{stack.dataverse}/_sim/load", {"entitySet": "accounts",
                                                                       "rows": dataverse_rows(prefix, size)})
                    runs[size_name] = {"rows_loaded": size, "load_s": round(load_s, 2),
                                       **sync_run(admin, source, host.pid, args.timeout)}
                large = runs.get("large") or runs["small"]
                target_raw = raw["dataverse_batch_rows_per_s" if source == "fno" else "fno_batch_rows_per_s"]
                if source == "fno":
                    target_raw = max(target_raw, raw["dataverse_upsert_multiple_rows_per_s"])
                slowest = min(target_raw, raw["azurite_batch_rows_per_s"])
                result[direction] = {"rows_per_s": large["rows_per_s"],
                                     "ratio_to_raw": round(large["rows_per_s"] / slowest, 3),
                                     "slowest_raw_store_rows_per_s": slowest, "runs": runs}
            admin.close()
        finally:
            stack.stop()
            if args.host_log:
                args.host_log.write_text(stack.processes[-1].log_path.read_text(errors="replace"))
    print(json.dumps({"benchmark": "initial_sync", "python": platform.python_version(), "cpus": os.cpu_count(),
                      "rows": args.rows, "small": args.small, "raw": raw, **result}, indent=2))


if __name__ == "__main__":
    main()
