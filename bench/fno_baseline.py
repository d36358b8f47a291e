"""Raw baselines of the F&O simulator: single-request writes/s and rows/s through `$batch` of 100.

Starts its own simulator (in memory, seeded) on a free port and prints one JSON object.
    .venv/bin/python -m bench.fno_baseline [--writes 500] [--batches 10]
"""

from __future__ import annotations

import argparse
import json
import time

import httpx

from devstack.fno.auth import make_token
from devstack.processes import ManagedProcess, free_port, python_module


def _batch(rows: list[dict[str, str]]) -> tuple[str, bytes]:
    parts = []
    for i, row in enumerate(rows, 1):
        parts.append(
            "--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {i}\r\n\r\nPOST VendorGroups HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            f"{json.dumps(row)}\r\n"
        )
    body = "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n" + "".join(parts) + "--cs--\r\n--b--\r\n"
    return "multipart/mixed; boundary=b", body.encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    proc = ManagedProcess("fno-bench", python_module("devstack.fno", "--port", str(port), "--max-concurrent", "0"),
                          port=port).start()
    headers = {"Authorization": "Bearer " + make_token(oid="b0b0b0b0-0000-0000-0000-000000000001")}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/data/", headers=headers, timeout=60) as client:
            start = time.perf_counter()
            for i in range(args.writes):
                resp = client.post("VendorGroups", json={"VendorGroupId": f"S{i}", "Description": "single"})
                resp.raise_for_status()
            single = time.perf_counter() - start
            start = time.perf_counter()
            for b in range(args.batches):
                ctype, body = _batch([{"VendorGroupId": f"B{b}-{i}", "Description": "batch"} for i in range(100)])
                resp = client.post("$batch", content=body, headers={"Content-Type": ctype})
                resp.raise_for_status()
                if resp.text.count("HTTP/1.1 201") != 100:
                    raise RuntimeError(f"batch {b} did not create 100 rows: {resp.text[:500]}")
            batched = time.perf_counter() - start
    finally:
        proc.stop()
    print(json.dumps({
        "bench": "fno_baseline",
        "single_writes": args.writes,
        "single_writes_per_s": round(args.writes / single, 1),
        "batch_size": 100,
        "batches": args.batches,
        "batch_rows_per_s": round(args.batches * 100 / batched, 1),
        "batch_requests_per_s": round(args.batches / batched, 2),
    }))


if __name__ == "__main__":
    main()
