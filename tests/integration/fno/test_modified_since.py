"""Rows changed since a time, as the engine's sweep asks for them: every entity carries a read-only
`ModifiedDateTime` (UTC, to the second) that a create, a changing update and an event-less load stamp, and
`$filter=ModifiedDateTime ge <time>` with `cross-company=true` answers the rows changed since then, in every
company. A deleted row is not among them (F&O's OData offers no deleted-rows feed)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

pytestmark = pytest.mark.integration


def _changed_since(odata: httpx.Client, since: str, prefix: str) -> dict[str, dict]:
    response = odata.get("CustomersV3", params={
        "cross-company": "true", "$select": "dataAreaId,CustomerAccount,ModifiedDateTime",
        "$filter": f"ModifiedDateTime ge {since} and CustomerAccount eq '{prefix}*'", "$orderby": "ModifiedDateTime"})
    assert response.status_code == 200, response.text
    return {f"{r['dataAreaId']}|{r['CustomerAccount']}": r for r in response.json()["value"]}


def _customer(odata: httpx.Client, company: str, account: str) -> None:
    response = odata.post("CustomersV3", params={"cross-company": "true"}, json={
        "dataAreaId": company, "CustomerAccount": account, "OrganizationName": account, "PartyType": "Organization",
        "CustomerGroupId": "10", "SalesCurrencyCode": "USD" if company == "usmf" else "EUR"})
    assert response.status_code == 201, response.text


def test_rows_changed_since_a_time_in_every_company(odata: httpx.Client, admin: httpx.Client) -> None:
    prefix = "MS" + uuid.uuid4().hex[:6].upper()
    _customer(odata, "usmf", f"{prefix}-OLD")
    time.sleep(1.1)  # ModifiedDateTime has whole seconds
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _customer(odata, "usmf", f"{prefix}-NEW")
    _customer(odata, "demf", f"{prefix}-DE")
    loaded = admin.post("load", json={"entity": "CustomersV3", "rows": [
        {"dataAreaId": "usmf", "CustomerAccount": f"{prefix}-LOAD", "OrganizationName": "loaded",
         "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD"}]})
    assert loaded.status_code == 200, loaded.text
    found = _changed_since(odata, since, prefix)
    assert set(found) == {f"usmf|{prefix}-NEW", f"demf|{prefix}-DE", f"usmf|{prefix}-LOAD"}
    assert all(row["ModifiedDateTime"] >= since for row in found.values())

    time.sleep(1.1)
    later = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    changed = odata.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{prefix}-OLD')",
                          params={"cross-company": "true"}, json={"OrganizationName": "renamed"})
    assert changed.status_code == 204
    deleted = odata.delete(f"CustomersV3(dataAreaId='demf',CustomerAccount='{prefix}-DE')",
                           params={"cross-company": "true"})
    assert deleted.status_code == 204
    assert set(_changed_since(odata, later, prefix)) == {f"usmf|{prefix}-OLD"}
