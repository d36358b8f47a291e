"""Bulk loads of the simulators without events (F&O `/admin/load`, Dataverse `/_sim/load`): rows/s for N new
rows, the same N again (updates), then reading the loaded set back page by page with the connectors' `page()`
as an initial sync does (filtered and ordered): the first page, and all pages.

Starts its own simulators (in memory, seeded) on free ports and prints one JSON object.
    .venv/bin/python -m bench.sim_load [--rows 100000] [--page 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx

from core.connectors import DataverseClient, FnoClient, LocalTokens, Page, jsonwire
from devstack.dataverse.seed import seed_id
from devstack.processes import ManagedProcess, free_port, python_module

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


async def timed_read(read: Callable[[str | None], Awaitable[Page]]) -> dict[str, Any]:
    """Every page from the first to the last next link: seconds for the first page, for all, and rows/s."""
    start = time.perf_counter()
    page = await read(None)
    first = time.perf_counter() - start
    rows, pages = len(page.rows), 1
    while page.next_link is not None:
        page = await read(page.next_link)
        rows, pages = rows + len(page.rows), pages + 1
    seconds = time.perf_counter() - start
    return {"rows": rows, "pages": pages, "first_page_s": round(first, 2), "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds)}


async def read_back(fno_url: str, dv_url: str, page_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    async with FnoClient(fno_url, LocalTokens()) as fo, DataverseClient(dv_url, LocalTokens()) as dv:
        fno = await timed_read(lambda link: fo.page(
            "CustomersV3", filter="CustomerAccount eq 'BL-*'", select=["dataAreaId", "CustomerAccount", "CreditLimit"],
            orderby="CustomerAccount", page_size=page_size, next_link=link))
        dataverse = await timed_read(lambda link: dv.page(
            "accounts", filter="startswith(accountnumber,'BL-')", select=["accountnumber", "creditlimit"],
            orderby="accountid", page_size=page_size, next_link=link))
    return fno, dataverse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    fno_port, dv_port = free_port(), free_port()
    fno = ManagedProcess("fno-load-bench", python_module("devstack.fno", "--port", str(fno_port)), port=fno_port)
    dataverse = ManagedProcess("dataverse-load-bench", python_module("devstack.dataverse", "--port", str(dv_port)),
                               port=dv_port)
    out: dict[str, Any] = {"rows": args.rows, "page": args.page}
    try:
        fno.start()
        dataverse.start()
        fno_url, dv_url = f"http://127.0.0.1:{fno_port}", f"http://127.0.0.1:{dv_port}"
        body = {"entity": "CustomersV3", "rows": fno_rows(args.rows)}
        print("F&O load ...", file=sys.stderr)
        out["fno"] = {"create": timed_load(f"{fno_url}/admin/load", body),
                      "reload": timed_load(f"{fno_url}/admin/load", body)}
        body = {"entitySet": "accounts", "rows": dataverse_rows(args.rows)}
        print("Dataverse load ...", file=sys.stderr)
        out["dataverse"] = {"create": timed_load(f"{dv_url}/_sim/load", body),
                            "reload": timed_load(f"{dv_url}/_sim/load", body)}
        print("reading back ...", file=sys.stderr)
        out["fno"]["read"], out["dataverse"]["read"] = asyncio.run(read_back(fno_url, dv_url, args.page))
    finally:
        fno.stop()
        dataverse.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
