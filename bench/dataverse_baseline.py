"""Raw-protocol baselines against the Dataverse simulator: what a client gets from the Web API alone,
so engine benchmarks can report ratios against these figures (same machine, same run).

    .venv/bin/python -m bench.dataverse_baseline [--singles 1000] [--batches 10] [--multiple-runs 3]

Prints one JSON object: single-request creates/s, $batch (100 creates per batch) rows/s, and
UpsertMultiple (1,000 rows per call) rows/s for the create pass and the update pass."""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid

import httpx

from devstack.dataverse.auth import make_token
from devstack.dataverse.seed import seed_id
from devstack.processes import ManagedProcess, free_port, python_module

API = "/api/data/v9.2/"


def batch_body(rows: list[dict], boundary: str) -> bytes:
    parts = []
    for row in rows:
        parts.append(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"POST {API}accounts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{json.dumps(row)}\r\n"
        )
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


def account(prefix: str, i: int) -> dict:
    return {"name": f"Bench {prefix} {i}", "accountnumber": f"{prefix}-{i}", "creditlimit": 1234.5678,
            "customertypecode": 3, "telephone1": "+1 555 0100"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--multiple-runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    proc = ManagedProcess(f"dataverse-bench-{port}", python_module("devstack.dataverse", "--port", str(port),
                                                                    "--seed", "on"), port=port).start()
    headers = {"Authorization": f"Bearer {make_token(str(uuid.uuid4()), name='bench')}", "OData-Version": "4.0",
               "OData-MaxVersion": "4.0", "Accept": "application/json"}
    results: dict[str, object] = {"machine": platform.machine(), "python": platform.python_version()}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", headers=headers, timeout=120) as client:
            client.get("WhoAmI").raise_for_status()
            started = time.perf_counter()
            for i in range(args.singles):
                client.post("accounts", content=json.dumps(account("S", i)),
                            headers={"Content-Type": "application/json"}).raise_for_status()
            elapsed = time.perf_counter() - started
            results["single_create_per_s"] = round(args.singles / elapsed, 1)

            started = time.perf_counter()
            for b in range(args.batches):
                boundary = f"batch_{uuid.uuid4().hex}"
                rows = [account(f"B{b}", i) for i in range(100)]
                r = client.post("$batch", content=batch_body(rows, boundary),
                                headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
                r.raise_for_status()
                assert r.text.count("HTTP/1.1 204") == 100, r.text[:500]
            elapsed = time.perf_counter() - started
            results["batch100_create_rows_per_s"] = round(args.batches * 100 / elapsed, 1)

            passes: dict[str, list[float]] = {"create": [], "update": []}
            company = seed_id("cdm_company", "usmf")
            for run in range(args.multiple_runs):
                # Upsert by the integration key (accountnumber + company), as the engine does.
                targets = [{"@odata.type": "Microsoft.Dynamics.CRM.account",
                            "@odata.id": f"accounts(accountnumber='M{run}-{i}',_msdyn_company_value={company})",
                            **{k: v for k, v in account(f"M{run}", i).items() if k != "accountnumber"}}
                           for i in range(1000)]
                for label in ("create", "update"):
                    started = time.perf_counter()
                    client.post("accounts/Microsoft.Dynamics.CRM.UpsertMultiple",
                                json={"Targets": targets}).raise_for_status()
                    passes[label].append(1000 / (time.perf_counter() - started))
            results["upsert_multiple1000_create_rows_per_s"] = round(max(passes["create"]), 1)
            results["upsert_multiple1000_update_rows_per_s"] = round(max(passes["update"]), 1)
    finally:
        proc.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
