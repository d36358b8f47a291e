"""`/_sim/load`, `/_sim/update`, `/_sim/delete`: rows written straight to the database with the checks, lookups
and versions of Web API writes, and no webhook (async steps on Create, Update and Delete registered to a
receiver; a Web API write is the control that they deliver) and no System Job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.connectors import jsonwire
from devstack.dataverse.registration import Registration, register_webhook
from devstack.dataverse.seed import SYSTEM_USER_ID, seed_id
from tests.fixtures.dataverse import DataverseSim, running_dataverse
from tests.fixtures.http_receiver import HttpReceiver

pytestmark = pytest.mark.integration
OID = "d2069f4e-58c0-4db3-9a3c-ddada13285f2"
MONEY = Decimal("12345678.1234567891")
USMF = seed_id("cdm_company", "usmf")
US_001 = seed_id("account", "usmf", "US-001")
GROUP_20 = f"/msdyn_customergroups(msdyn_groupid='20',_msdyn_company_value={USMF})"  # a composite-key bind
MESSAGES = ("Create", "Update", "Delete")


@pytest.fixture(scope="module")
def dataverse() -> Iterator[DataverseSim]:
    """This module's own simulator: its loaded rows are the SYSTEM user's, like the seed's, which other tests of
    this folder count."""
    with running_dataverse() as sim:
        yield sim


@pytest.fixture(scope="module")
def api(dataverse: DataverseSim) -> Iterator[httpx.Client]:
    with dataverse.client(oid=OID) as client:
        yield client


@pytest.fixture(scope="module")
def steps(api: httpx.Client, receiver: HttpReceiver) -> Iterator[list[Registration]]:
    """Async webhook steps on every write of an account, each to its own path (`/direct-<message>`)."""
    registrations = [register_webhook(api, receiver.url(f"/direct-{m.lower()}"), entity="account", message=m)
                     for m in MESSAGES]
    try:
        yield registrations
    finally:
        for registration in registrations:
            registration.remove(api)


@pytest.fixture
def prefix() -> str:
    return f"DL{uuid.uuid4().hex[:5].upper()}-"


def account(number: str, index: int, **values: Any) -> dict[str, Any]:
    return {"name": f"Loaded {index}", "accountnumber": number, "creditlimit": MONEY + index,
            "customertypecode": 3, "creditonhold": index % 2 == 0,
            "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')",
            "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='EUR')",
            "msdyn_customergroupid@odata.bind": GROUP_20,
            "msdyn_billingaccount@odata.bind": f"/accounts({US_001})", **values}


def read(api: httpx.Client, prefix: str) -> dict[str, dict[str, Any]]:
    """This test's accounts by number, over the Web API (Decimals exact)."""
    resp = api.get("accounts", params={"$filter": f"startswith(accountnumber,'{prefix}')"})
    assert resp.status_code == 200, resp.text
    return {r["accountnumber"]: r for r in jsonwire.loads(resp.content)["value"]}


def delivered(receiver: HttpReceiver, dataverse: DataverseSim, marks: list[str]) -> list[str]:
    """Paths of webhook calls that name a row of this test (marks: its account number prefix and row ids; an
    Update or Delete body without images names the row by id only)."""
    dataverse.drain()
    return [r.path for m in MESSAGES for r in receiver.at(f"/direct-{m.lower()}")
            if any(mark in r.raw.decode() for mark in marks)]


def jobs(api: httpx.Client) -> int:
    return len(api.get("asyncoperations", params={"$select": "asyncoperationid"}).json()["value"])


def post(dataverse: DataverseSim, route: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{dataverse.url}/_sim/{route}", content=jsonwire.dumps(body),
                      headers={"Content-Type": "application/json"})


def test_load_creates_rows_read_back_with_lookups_and_versions_without_webhooks(
        dataverse: DataverseSim, api: httpx.Client, receiver: HttpReceiver, steps: list[Registration],
        prefix: str) -> None:
    given = str(uuid.uuid4())
    rows = [account(f"{prefix}{i:04d}", i) for i in range(200)]
    rows[7]["accountid"] = given  # an id given is kept; the others are made
    jobs_before = jobs(api)
    started = datetime.now(UTC).replace(microsecond=0)
    assert dataverse.load("accounts", rows) == {"loaded": 200, "created": 200, "updated": 0}

    got = read(api, prefix)
    assert len(got) == 200 and got[f"{prefix}0007"]["accountid"] == given
    row = got[f"{prefix}0001"]
    assert row["creditlimit"] == MONEY + 1 and isinstance(row["creditlimit"], Decimal)
    assert (row["customertypecode"], row["creditonhold"], row["statecode"], row["statuscode"]) == (3, False, 0, 1)
    assert row["_msdyn_company_value"] == USMF and row["_msdyn_billingaccount_value"] == US_001
    assert row["_transactioncurrencyid_value"] == seed_id("transactioncurrency", "EUR")
    assert row["_msdyn_customergroupid_value"] == seed_id("msdyn_customergroup", "usmf", "20")
    assert row["_createdby_value"] == row["_modifiedby_value"] == SYSTEM_USER_ID
    created = datetime.fromisoformat(row["createdon"])
    assert row["createdon"] == row["modifiedon"] and started - timedelta(seconds=1) <= created
    versions = [r["versionnumber"] for r in got.values()]
    assert len(set(versions)) == 200 and all(r["@odata.etag"] == f'W/"{r["versionnumber"]}"' for r in got.values())
    by_key = api.get(f"accounts(accountnumber='{prefix}0002',_msdyn_company_value={USMF})")
    assert by_key.status_code == 200  # the alternate-key index is written too

    marks = [prefix, *(r["accountid"] for r in got.values())]
    assert delivered(receiver, dataverse, marks) == [] and jobs(api) == jobs_before
    # The control: a Web API write of a loaded row does reach the registered step.
    assert api.patch(f"accounts({given})", json={"name": "Renamed"}).status_code == 204
    assert delivered(receiver, dataverse, marks) == ["/direct-update"]


def test_reload_updates_by_id_or_alternate_key_instead_of_duplicating(
        dataverse: DataverseSim, api: httpx.Client, receiver: HttpReceiver, steps: list[Registration],
        prefix: str) -> None:
    dataverse.load("accounts", [account(f"{prefix}{i:04d}", i) for i in range(10)])
    before = read(api, prefix)
    again = [account(f"{prefix}{i:04d}".lower(), i, name=f"Again {i}") for i in range(10)]  # keys ignore case
    again[3] = {"accountid": before[f"{prefix}0003"]["accountid"], "telephone1": "+1 555 0003"}  # by id, one column
    again.append({"accountid": before[f"{prefix}0004"]["accountid"], "name": "Twice in one load"})
    assert dataverse.load("accounts", again) == {"loaded": 11, "created": 0, "updated": 11}

    after = read(api, prefix)
    assert sorted(after) == sorted(before)
    assert {a: r["accountid"] for a, r in after.items()} == {a: r["accountid"] for a, r in before.items()}
    assert after[f"{prefix}0001"]["name"] == "Again 1" and after[f"{prefix}0004"]["name"] == "Twice in one load"
    assert after[f"{prefix}0003"]["name"] == "Loaded 3" and after[f"{prefix}0003"]["telephone1"] == "+1 555 0003"
    for number, row in after.items():
        assert row["versionnumber"] > before[number]["versionnumber"]
        assert row["createdon"] == before[number]["createdon"] and row["modifiedon"] >= before[number]["modifiedon"]
    assert delivered(receiver, dataverse, [prefix, *(r["accountid"] for r in after.values())]) == []


@pytest.mark.parametrize(("bad", "column"), [
    ({"creditlimit": "abc"}, "creditlimit"),  # wrong type
    ({"name": "x" * 161}, "name"),  # longer than MaxLength
    ({"customertypecode": 999}, "customertypecode"),  # not an option
    ({"msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='none')"}, "msdyn_company@odata.bind"),
    ({"nosuchcolumn": 1}, "nosuchcolumn"),
])
def test_a_bad_row_refuses_the_load_naming_row_and_column(dataverse: DataverseSim, api: httpx.Client, prefix: str,
                                                          bad: dict[str, Any], column: str) -> None:
    rows = [account(f"{prefix}{i:04d}", i) for i in range(5)]
    rows[3].update(bad)
    resp = post(dataverse, "load", {"entitySet": "accounts", "rows": rows})
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert (problem["row"], problem["column"]) == (3, column)
    assert problem["detail"].startswith(f"rows[3] column '{column}': ")
    assert read(api, prefix) == {}  # nothing loaded, not even the good rows before it


def test_a_duplicate_alternate_key_refuses_the_load(dataverse: DataverseSim, api: httpx.Client, prefix: str) -> None:
    rows = [account(f"{prefix}0001", 1, accountid=str(uuid.uuid4())),
            account(f"{prefix}0001", 2, accountid=str(uuid.uuid4()))]  # two rows, one key
    resp = post(dataverse, "load", {"entitySet": "accounts", "rows": rows})
    assert resp.status_code == 400 and (resp.json()["row"], resp.json()["column"]) == (1, "accountnumber")
    assert resp.json()["code"] == "0x80040237"
    assert read(api, prefix) == {}
    assert post(dataverse, "load", {"entitySet": "nosuchset", "rows": []}).status_code == 404
    assert post(dataverse, "load", {"entitySet": "accounts"}).status_code == 400


def test_update_changes_a_row_without_webhooks(dataverse: DataverseSim, api: httpx.Client, receiver: HttpReceiver,
                                               steps: list[Registration], prefix: str) -> None:
    dataverse.load("accounts", [account(f"{prefix}0001", 1)])
    row = read(api, prefix)[f"{prefix}0001"]
    result = dataverse.update("accounts", row["accountid"], {"creditlimit": Decimal("0.5"),
                                                              "transactioncurrencyid@odata.bind": None})
    after = read(api, prefix)[f"{prefix}0001"]
    assert result == {"updated": 1, "versionnumber": after["versionnumber"]}
    assert after["versionnumber"] > row["versionnumber"] and after["creditlimit"] == Decimal("0.5")
    assert after["_transactioncurrencyid_value"] is None and after["name"] == row["name"]
    assert delivered(receiver, dataverse, [prefix, row["accountid"]]) == []

    bad = post(dataverse, "update", {"entitySet": "accounts", "id": row["accountid"], "set": {"creditlimit": "x"}})
    assert bad.status_code == 400 and bad.json()["column"] == "creditlimit"
    missing = post(dataverse, "update", {"entitySet": "accounts", "id": str(uuid.uuid4()), "set": {"name": "x"}})
    assert missing.status_code == 404


def test_delete_removes_rows_without_webhooks(dataverse: DataverseSim, api: httpx.Client, receiver: HttpReceiver,
                                              steps: list[Registration], prefix: str) -> None:
    dataverse.load("accounts", [account(f"{prefix}{i:04d}", i) for i in range(3)])
    ids = {a: r["accountid"] for a, r in read(api, prefix).items()}
    gone = [ids[f"{prefix}0000"], ids[f"{prefix}0001"], str(uuid.uuid4())]
    assert dataverse.delete("accounts", gone) == {"deleted": 2}  # a missing id is not counted
    assert sorted(read(api, prefix)) == [f"{prefix}0002"]
    assert api.get(f"accounts({gone[0]})").status_code == 404
    assert delivered(receiver, dataverse, [prefix, *ids.values()]) == []
    bad = post(dataverse, "delete", {"entitySet": "accounts", "ids": [ids[f"{prefix}0002"], "not-a-guid"]})
    assert bad.status_code == 400 and bad.json()["row"] == 1
    assert sorted(read(api, prefix)) == [f"{prefix}0002"]  # nothing deleted
