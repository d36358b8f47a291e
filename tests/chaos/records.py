"""Writing customers on each side as users do, and reading back what the chaos checks count: final values on both
sides, rows per key (a create that landed twice), committed writes per record (the simulators' stats)."""

from __future__ import annotations

import functools
import time
from collections import Counter
from typing import Any

import httpx

from tests.e2e.conftest import Stack, dv_stats, fno_stats


def fno_address(account: str) -> str:
    return f"dataAreaId='usmf',CustomerAccount='{account}'"


def fno_create(stack: Stack, account: str, name: str, phone: str) -> None:
    response = stack.fo.post("CustomersV3", json={
        "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": name, "PartyType": "Organization",
        "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30", "PrimaryContactPhone": phone})
    assert response.status_code == 201, response.text


def fno_update(stack: Stack, account: str, **values: str) -> None:
    response = stack.fo.patch(f"CustomersV3({fno_address(account)})", params={"cross-company": "true"},
                              json=values)
    assert response.status_code == 204, response.text


def dv_write(stack: Stack, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """A Dataverse write as the test user, waiting out its own 429s."""
    for _ in range(60):
        response = stack.dv.request(method, path, json=body)
        if response.status_code != 429:
            assert response.status_code == 204, response.text
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise AssertionError(f"{method} {path}: throttled for too long")


@functools.cache
def _group_id(stack: Stack) -> str:
    return str(stack.rows("msdyn_customergroups", **{"$filter": (
        f"msdyn_groupid eq '10' and _msdyn_company_value eq {stack.company_id('usmf')}")})[0]["msdyn_customergroupid"])


def dv_create(stack: Stack, account: str, name: str, phone: str) -> str:
    response = dv_write(stack, "POST", "accounts", {
        "name": name, "accountnumber": account, "telephone1": phone, "customertypecode": 3,
        "msdyn_company@odata.bind": f"/cdm_companies({stack.company_id('usmf')})",
        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({_group_id(stack)})",
        "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')"})
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")").lower()


def dv_update(stack: Stack, row_id: str, **values: str) -> None:
    dv_write(stack, "PATCH", f"accounts({row_id})", values)


def dv_rows(stack: Stack, prefix: str) -> list[dict[str, Any]]:
    """Every USMF account whose number starts with `prefix` (a doubled create shows as two rows)."""
    return stack.rows("accounts", **{"$select": "accountid,accountnumber,name,telephone1", "$filter": (
        f"_msdyn_company_value eq {stack.company_id('usmf')} and startswith(accountnumber,'{prefix}')")})


def fno_rows(stack: Stack, prefix: str) -> list[dict[str, Any]]:
    response = stack.fo.get("CustomersV3", params={
        "cross-company": "true", "$filter": f"dataAreaId eq 'usmf' and CustomerAccount eq '{prefix}*'",
        "$select": "CustomerAccount,OrganizationName,PrimaryContactPhone"})
    response.raise_for_status()
    return list(response.json()["value"])


def both_sides(stack: Stack, prefix: str) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]], int]:
    """(F&O values by account, Dataverse values by account, rows beyond one per account on either side)."""
    dv, fo = dv_rows(stack, prefix), fno_rows(stack, prefix)
    extra = sum(n - 1 for n in Counter(r["accountnumber"] for r in dv).values())
    extra += sum(n - 1 for n in Counter(r["CustomerAccount"] for r in fo).values())
    return ({r["CustomerAccount"]: (r["OrganizationName"], r["PrimaryContactPhone"]) for r in fo},
            {r["accountnumber"]: (r["name"], r["telephone1"]) for r in dv}, extra)


def record_writes(stack: Stack) -> tuple[dict[str, int], dict[str, int]]:
    """Committed writes since the last stats reset: (F&O by key address, Dataverse by account id)."""
    return (dict(fno_stats(stack)["record_writes"].get("CustomersV3", {})),
            dict(dv_stats(stack)["record_writes"].get("accounts", {})))


def created_ids(stack: Stack) -> tuple[int, int]:
    """Creates committed since the last stats reset (F&O, Dataverse)."""
    return (int(fno_stats(stack)["writes"]["by_operation"].get("Create", 0)),
            int(dv_stats(stack)["writes"]["by_message"].get("Create", 0)))
