"""Bulk loads of the simulators without events (F&O `/admin/load`, Dataverse `/_sim/load`): rows/s for N new
rows, the same N again (updates), and what one page of the loaded set then costs to read over OData.

Starts its own simulators (in memory, seeded) on free ports and prints one JSON object.
    .venv/bin/python -m bench.sim_load [--rows 100000] [--page 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from core.connectors import jsonwire
from devstack.dataverse.auth import make_token as dataverse_token
from devstack.dataverse.seed import seed_id
from devstack.fno.auth import make_token as fno_token
from devstack.processes import ManagedProcess, free_port, python_module

OID = "b0b0b0b0-0000-0000-0000-000000000002"
# A lookup bound by a composite alternate key (name + company).
NET30 = f"/msdyn_paymentterms(msdyn_name='Net30',_msdyn_company_value={seed_id('cdm_company', 'usmf')})"


def fno_rows(count: int) -> list[dict[str, Any]]:
    return [{"dataAreaId": "usmf" if i % 2 else "demf", "CustomerAccount": f"BL-{i:06d}",
             "OrganizationName": f"Bulk {i}", "PartyType": "Organization", "CustomerGroupId": "10",
             "SalesCurrencyCode": "USD" if i % 2 else "EUR", "PaymentTerms": "Net30",
             "CreditLimit": Decimal("1234.5678") + i, "AddressCity": "Redmond"} for i in range(count)]


def dataverse_rows(count: int) -> list[dict[str, Any]]:
    return [{"name": f"Bulk {i}", "accountnumber": f"BL-{i:06d}", "creditlimit": Decimal("1234.5678") + i,
             "address1_city": "Redmond", "customertypecode": 3,
             "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')",
             "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='EUR')",
             "msdyn_paymentterm@odata.bind": NET30} for i in range(count)]


def timed_load(url: str, body: dict[str, Any]) -> dict[str, Any]:
    content = jsonwire.dumps(body)
    start = time.perf_counter()
    response = httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=600)
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{url}: {response.status_code} {response.text[:500]}")
    loaded = response.json()
    return {**loaded, "seconds": round(seconds, 2), "rows_per_s": round(loaded["loaded"] / seconds)}


def timed_page(get: Callable[[], httpx.Response]) -> float:
    start = time.perf_counter()
    get().raise_for_status()
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=5000)
    args = parser.parse_args()
    fno_port, dv_port = free_port(), free_port()
    fno = ManagedProcess("fno-load-bench", python_module("devstack.fno", "--port", str(fno_port)), port=fno_port)
    dataverse = ManagedProcess("dataverse-load-bench", python_module("devstack.dataverse", "--port", str(dv_port)),
                               port=dv_port)
    prefer = {"Prefer": f"odata.maxpagesize={args.page}"}
    out: dict[str, Any] = {"rows": args.rows, "page": args.page}
    try:
        fno.start()
        dataverse.start()
        fno_url, dv_url = f"http://127.0.0.1:{fno_port}", f"http://127.0.0.1:{dv_port}"
        body = {"entity": "CustomersV3", "rows": fno_rows(args.rows)}
        print("F&O load ...", file=sys.stderr)
        out["fno"] = {"create": timed_load(f"{fno_url}/admin/load", body),
                      "reload": timed_load(f"{fno_url}/admin/load", body)}
        fno_headers = {"Authorization": "Bearer " + fno_token(oid=OID), **prefer}
        out["fno"]["page_seconds"] = timed_page(lambda: httpx.get(
            f"{fno_url}/data/CustomersV3", params={"cross-company": "true", "$filter": "CustomerAccount eq 'BL-*'"},
            headers=fno_headers, timeout=600))
        body = {"entitySet": "accounts", "rows": dataverse_rows(args.rows)}
        print("Dataverse load ...", file=sys.stderr)
        out["dataverse"] = {"create": timed_load(f"{dv_url}/_sim/load", body),
                            "reload": timed_load(f"{dv_url}/_sim/load", body)}
        dv_headers = {"Authorization": "Bearer " + dataverse_token(OID), **prefer}
        out["dataverse"]["page_seconds"] = timed_page(lambda: httpx.get(
            f"{dv_url}/api/data/v9.2/accounts", params={"$filter": "startswith(accountnumber,'BL-')"},
            headers=dv_headers, timeout=600))
    finally:
        fno.stop()
        dataverse.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
