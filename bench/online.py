"""Online mode's cost to the user: how long a Dataverse save takes when it writes to F&O inside the save.

    .venv/bin/python -m bench.online [--records 50] [--rounds 4] [--timeout 180] [--host-log PATH]

Starts the whole stack on free ports as bench.live_sync does, over a copy of the shipped maps with the
customers map online. Then, one save at a time (a user at a form):
1. `--records` accounts created in Dataverse (each save creates the F&O customer before it answers);
2. `--rounds` renames of each (each save updates the F&O customer before it answers);
3. the raw protocol on the same stack: the same renames PATCHed straight to F&O (what online adds at least);
4. the map switched back to asynchronous through its file (reloaded, steps redeployed as asynchronous), and
   the same renames again: the save as it costs without online mode.
Prints one JSON object: save latency p50/p95/max per phase (ms), the F&O write's, the online update's
ratio to the asynchronous save and the milliseconds online adds to a save.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.initial_sync import MASTER_KEY
from bench.live_sync import HEADERS, fno_key, start_host, start_simulators
from devstack.up import wait_for_deployment

MAPS = Path(__file__).resolve().parents[1] / "maps"


def latencies(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1), "saves": len(ordered)}


def timed(call: Any) -> float:
    started = time.perf_counter()
    response = call()
    seconds = time.perf_counter() - started
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return seconds


def steps_mode(client: httpx.Client, dataverse: str) -> int | None:
    rows = client.get(f"{dataverse}/api/data/v9.2/sdkmessageprocessingsteps", params={
        "$select": "mode", "$filter": "name eq 'dw-oss: Update of account'"}).json().get("value", [])
    return rows[0]["mode"] if rows else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.online", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50, help="accounts created, then renamed")
    parser.add_argument("--rounds", type=int, default=4, help="renames of each account per phase")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds the switch to asynchronous may take")
    parser.add_argument("--host-log", type=Path, help="copy the Functions host's log here")
    args = parser.parse_args(argv)
    prefix = f"ON{uuid.uuid4().hex[:4].upper()}"
    out: dict[str, Any] = {"benchmark": "online", "records": args.records, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        folder = Path(tmp)
        maps = folder / "maps"
        shutil.copytree(MAPS, maps)
        customers = maps / "customers.json"
        definition = json.loads(customers.read_text())
        customers.write_text(json.dumps({**definition, "online": True}, indent=2))
        stack = start_simulators(folder, tables_in_memory=True)
        try:
            settings = start_host(stack, folder, MAPS_PATH=str(maps))
            wait_for_deployment(settings, threading.Event(), dataverse=stack.dataverse, fno=stack.fno)
            api = f"{stack.dataverse}/api/data/v9.2"
            with httpx.Client(headers=HEADERS, timeout=120) as client:
                company = client.get(f"{api}/cdm_companies", params={
                    "$filter": "cdm_companycode eq 'USMF'"}).json()["value"][0]["cdm_companyid"]
                group = client.get(f"{api}/msdyn_customergroups", params={
                    "$filter": f"msdyn_groupid eq '20' and _msdyn_company_value eq {company}"}).json()["value"][0]
                ids: dict[str, str] = {}
                creates = []
                for n in range(args.records):
                    number = f"{prefix}-{n:04d}"
                    started = time.perf_counter()
                    response = client.post(f"{api}/accounts", headers={"Prefer": "return=representation"}, json={
                        "name": f"Online {n}", "accountnumber": number, "customertypecode": 3,
                        "msdyn_company@odata.bind": f"/cdm_companies({company})",
                        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({group['msdyn_customergroupid']})",
                        "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='EUR')"})
                    creates.append(time.perf_counter() - started)
                    response.raise_for_status()
                    ids[number] = response.json()["accountid"]
                missing = [n for n in ids if client.get(f"{stack.fno}/data/{fno_key('usmf', n)}").status_code != 200]
                out["online_create"] = {**latencies(creates), "not_in_fno_when_answered": len(missing)}

                def renames(label: str) -> list[float]:
                    return [timed(lambda n=number, r=r: client.patch(f"{api}/accounts({ids[n]})",
                                                                    json={"name": f"{label} {r} {n}"}))
                            for r in range(args.rounds) for number in ids]

                out["online_update"] = latencies(renames("online"))
                out["fno_patch_raw"] = latencies([
                    timed(lambda n=number, r=r: client.patch(f"{stack.fno}/data/{fno_key('usmf', n)}",
                                                            json={"OrganizationName": f"raw {r} {n}"}))
                    for r in range(args.rounds) for number in ids])
                # back to asynchronous: the file changes, the host reloads it and redeploys the steps
                customers.write_text(json.dumps(definition, indent=2))
                deadline = time.monotonic() + args.timeout
                while steps_mode(client, stack.dataverse) != 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the account steps did not turn asynchronous")
                    # an instance looks at its map files when it is invoked: ask it something
                    client.get(f"{stack.host}/api/manage/v1/modes", headers={"x-functions-key": MASTER_KEY})
                    time.sleep(1)
                time.sleep(2)
                out["async_update"] = latencies(renames("async"))
            out["online_update_ratio_to_async"] = round(out["online_update"]["p50_ms"]
                                                        / out["async_update"]["p50_ms"], 2)
            out["online_adds_ms_p50"] = round(out["online_update"]["p50_ms"] - out["async_update"]["p50_ms"], 1)
        finally:
            if args.host_log:
                args.host_log.write_text(stack.processes[-1].log_path.read_text(errors="replace"))
            stack.stop()
    print(json.dumps(out, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
