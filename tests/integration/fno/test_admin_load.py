"""`/admin/load` and `/admin/delete`: records written or removed straight in the database, with the checks and
versions of OData writes, and no business or data event (observed on a receiver with every customer event
active, and a normal write as the control that the activations deliver)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.connectors import jsonwire
from tests.fixtures.fno import FnoSimulator
from tests.integration.fno.receiver import Receiver

pytestmark = pytest.mark.integration
EVENTS = ("DWCustomerChangedBusinessEvent", "CustomersV3.Create", "CustomersV3.Update", "CustomersV3.Delete")
MONEY = Decimal("1234567.0123456789")


@pytest.fixture(scope="module")
def receiver(admin: httpx.Client) -> Iterator[Receiver]:
    """A receiver with every customer event of every company active; removed after the module."""
    receiver = Receiver().start()
    name = f"load-{uuid.uuid4().hex[:6]}"
    assert admin.post("endpoints", json={"name": name, "type": "https", "url": receiver.url}).status_code == 201
    try:
        for event in EVENTS:
            resp = admin.post("activations", json={"eventId": event, "legalEntity": "", "endpoint": name})
            assert resp.status_code == 201, resp.text
        yield receiver
    finally:
        admin.delete(f"endpoints/{name}")
        receiver.stop()


@pytest.fixture
def prefix() -> str:
    return f"LD{uuid.uuid4().hex[:5].upper()}-"


def customer(account: str, index: int, **values: Any) -> dict[str, Any]:
    company = "usmf" if index % 2 == 0 else "demf"
    return {"dataAreaId": company, "CustomerAccount": account, "OrganizationName": f"Loaded {index}",
            "PartyType": "Organization", "CustomerGroupId": "20" if index % 3 else "10",
            "SalesCurrencyCode": "USD" if company == "usmf" else "EUR", "CreditLimit": MONEY + index,
            "CustomerSinceDate": "2024-02-29", "CreditLimitIsMandatory": "Yes" if index % 4 == 0 else "No",
            **values}


def read(odata: httpx.Client, prefix: str) -> dict[str, dict[str, Any]]:
    """Every record of this test, by account, read over OData across companies (Decimals exact)."""
    resp = odata.get("CustomersV3", params={"$filter": f"CustomerAccount eq '{prefix}*'", "cross-company": "true"})
    assert resp.status_code == 200, resp.text
    return {r["CustomerAccount"]: r for r in jsonwire.loads(resp.content)["value"]}


def mentioning(receiver: Receiver, text: str) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.received if text in r.body.decode()]


def drain(admin: httpx.Client) -> None:
    assert admin.post("drain").status_code == 200


def test_load_creates_records_read_back_over_odata_without_events(
        fno: FnoSimulator, odata: httpx.Client, admin: httpx.Client, receiver: Receiver, prefix: str) -> None:
    rows = [customer(f"{prefix}{i:04d}", i) for i in range(300)]
    started = datetime.now(UTC).replace(microsecond=0)
    assert fno.load("CustomersV3", rows) == {"loaded": 300, "created": 300, "updated": 0, "unchanged": 0}

    got = read(odata, prefix)
    assert len(got) == 300
    first, second = got[f"{prefix}0000"], got[f"{prefix}0001"]
    assert (first["dataAreaId"], second["dataAreaId"]) == ("usmf", "demf")
    assert second["CreditLimit"] == MONEY + 1 and isinstance(second["CreditLimit"], Decimal)
    assert (first["CreditLimitIsMandatory"], second["CreditLimitIsMandatory"]) == ("Yes", "No")
    assert first["CustomerSinceDate"] == "2024-02-29T12:00:00Z" and second["SalesCurrencyCode"] == "EUR"
    assert first["PaymentTerms"] == "" and first["NameAlias"] == ""  # defaults as a POST would fill them
    assert first["ModifiedBy"] == "Admin"
    stamped = datetime.fromisoformat(first["ModifiedDateTime"])
    assert started - timedelta(seconds=1) <= stamped <= datetime.now(UTC) + timedelta(seconds=1)
    assert len({r["@odata.etag"] for r in got.values()}) == 300  # each its own RecId

    # The control: a normal write of a loaded record raises its events, so the activations do deliver.
    key = f"CustomersV3(dataAreaId='demf',CustomerAccount='{prefix}0001')"
    assert odata.patch(key, params={"cross-company": "true"}, json={"OrganizationName": "Renamed"}).status_code == 204
    drain(admin)
    receiver.wait_for(lambda p: p.get("ChangeType") == "Update" and p.get("CustomerAccount") == f"{prefix}0001")
    sent = [r.body.decode() for r in receiver.received if prefix in r.body.decode()]
    assert {a for body in sent for a in re.findall(re.escape(prefix) + r"\d{4}", body)} == {f"{prefix}0001"}
    assert not [p for p in mentioning(receiver, prefix) if "Create" in (p.get("ChangeType"), p.get("MessageName"))]


def test_reload_updates_by_key_instead_of_duplicating(
        fno: FnoSimulator, odata: httpx.Client, admin: httpx.Client, receiver: Receiver, prefix: str) -> None:
    rows = [customer(f"{prefix}{i:04d}", i) for i in range(20)]
    fno.load("CustomersV3", rows)
    before = read(odata, prefix)

    again = [dict(row) for row in rows]
    for row in again[:5]:  # keys compare case-insensitively, as in F&O
        row.update(dataAreaId=row["dataAreaId"].upper(), CustomerAccount=row["CustomerAccount"].lower(),
                   CreditLimit=Decimal("0.0000000001"))
    again.append(customer(f"{prefix}0000", 0, OrganizationName="Twice in one load"))
    result = fno.load("CustomersV3", again)
    assert result == {"loaded": 21, "created": 0, "updated": 6, "unchanged": 15}

    after = read(odata, prefix)
    assert sorted(after) == sorted(before)  # no duplicates, the stored key keeps its first spelling
    assert after[f"{prefix}0001"]["CreditLimit"] == Decimal("0.0000000001")
    assert after[f"{prefix}0000"]["OrganizationName"] == "Twice in one load"
    changed = {a for a in after if after[a]["@odata.etag"] != before[a]["@odata.etag"]}
    assert changed == {f"{prefix}{i:04d}" for i in range(5)}  # a new version only where a value changed
    drain(admin)
    assert mentioning(receiver, prefix) == []


@pytest.mark.parametrize(("bad", "field"), [
    ({"PartyType": "Robot"}, "PartyType"),  # not a symbol of the enum
    ({"SalesCurrencyCode": "XXX"}, "SalesCurrencyCode"),  # no such currency: validateWrite's relation check
    ({"CreditLimit": "1.00000000001"}, "CreditLimit"),  # more places than the field's scale
    ({"CustomerGroupId": ""}, "CustomerGroupId"),  # mandatory
    ({"NoSuchField": 1}, "NoSuchField"),
])
def test_a_bad_row_refuses_the_load_naming_row_and_field(fno: FnoSimulator, odata: httpx.Client, prefix: str,
                                                         bad: dict[str, Any], field: str) -> None:
    rows = [customer(f"{prefix}{i:04d}", i) for i in range(4)]
    rows[2].update(bad)
    resp = httpx.post(f"{fno.admin_url}load", content=jsonwire.dumps({"entity": "CustomersV3", "rows": rows}),
                      headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert (problem["row"], problem["field"]) == (2, field)
    assert problem["detail"].startswith(f"rows[2] field '{field}': ")
    assert read(odata, prefix) == {}  # nothing loaded, not even the good rows before it


def test_load_refuses_what_is_not_a_load(fno: FnoSimulator) -> None:
    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{fno.admin_url}load", json=body)

    assert post({"entity": "NoSuchSet", "rows": []}).status_code == 400
    assert post({"entity": "CustomersV3", "rows": {"not": "a list"}}).status_code == 400
    assert post({"entity": "CustomersV3", "rows": ["not an object"]}).json()["row"] == 0
    assert post({"entity": "CustomersV3", "rows": []}).json() == {"loaded": 0, "created": 0, "updated": 0,
                                                                  "unchanged": 0}


def test_delete_removes_records_without_events(fno: FnoSimulator, odata: httpx.Client, admin: httpx.Client,
                                               receiver: Receiver, prefix: str) -> None:
    fno.load("CustomersV3", [customer(f"{prefix}{i:04d}", i) for i in range(3)])
    keys = [{"dataAreaId": "usmf", "CustomerAccount": f"{prefix}0000"},
            {"dataAreaId": "DEMF", "CustomerAccount": f"{prefix}0001".lower()},
            {"dataAreaId": "usmf", "CustomerAccount": f"{prefix}NONE"}]
    assert fno.delete("CustomersV3", keys) == {"deleted": 2}  # the missing one is not counted
    assert sorted(read(odata, prefix)) == [f"{prefix}0002"]
    gone = odata.get(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{prefix}0000')")
    assert gone.status_code == 404
    drain(admin)
    assert mentioning(receiver, prefix) == []

    partial = httpx.post(f"{fno.admin_url}delete", json={"entity": "CustomersV3", "keys": [
        {"dataAreaId": "usmf", "CustomerAccount": f"{prefix}0002"}, {"CustomerAccount": f"{prefix}0002"}]})
    assert partial.status_code == 400 and (partial.json()["row"], partial.json()["field"]) == (1, "dataAreaId")
    assert sorted(read(odata, prefix)) == [f"{prefix}0002"]  # nothing deleted
