"""DataverseClient against the Dataverse simulator over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.connectors import (
    AuthFailed,
    BatchOp,
    ConflictError,
    DataverseClient,
    LocalTokens,
    PermanentError,
    TokenError,
    ValidationFailed,
)
from tests.fixtures.dataverse import DataverseSim, start_dataverse

MONEY = Decimal("12345678.1234567891")  # 10 decimal places: a float would lose the tail


async def company_id(dv: DataverseClient, code: str = "usmf") -> str:
    rows = await dv.query("cdm_companies", filter=f"cdm_companycode eq '{code}'", select=["cdm_companyid"])
    assert len(rows) == 1
    return rows[0]["cdm_companyid"]


async def test_crud_round_trip_keeps_money_exact(dv: DataverseClient, unique: str) -> None:
    row_id = await dv.create("accounts", {
        "name": f"Round trip {unique}", "accountnumber": f"RT-{unique}", "creditlimit": MONEY,
        "msdyn_company@odata.bind": dv.bind("cdm_companies", key={"cdm_companycode": "usmf"}),
    })
    row = await dv.get("accounts", row_id, select=["name", "creditlimit", "_msdyn_company_value"])
    assert row is not None
    assert row["creditlimit"] == MONEY and isinstance(row["creditlimit"], Decimal)
    assert row["_msdyn_company_value"] == await company_id(dv)

    await dv.update("accounts", row_id, {"creditlimit": MONEY + Decimal("0.0000000001")})
    row = await dv.get("accounts", row_id, select=["creditlimit"])
    assert row is not None and row["creditlimit"] == Decimal("12345678.1234567892")

    assert await dv.delete("accounts", row_id) is True
    assert await dv.delete("accounts", row_id) is False
    assert await dv.get("accounts", row_id) is None


async def test_get_missing_row_is_none(dv: DataverseClient) -> None:
    assert await dv.get("accounts", "00000000-0000-0000-0000-00000000abcd") is None
    assert await dv.get("accounts", key={"accountnumber": "NO-SUCH", "_msdyn_company_value":
                                         await company_id(dv)}) is None


async def test_upsert_by_alternate_key_creates_then_updates(dv: DataverseClient, unique: str) -> None:
    key = {"accountnumber": f"UP-{unique}", "_msdyn_company_value": await company_id(dv)}
    body = {"name": "Upsert one", "creditlimit": MONEY,
            "msdyn_company@odata.bind": dv.bind("cdm_companies", key={"cdm_companycode": "usmf"}),
            "accountnumber": f"UP-{unique}"}  # key column in the body: the client must leave it out
    first = await dv.upsert("accounts", key, body, select=["name", "accountnumber", "creditlimit"])
    assert first.created is True
    assert first.row["accountnumber"] == f"UP-{unique}" and first.row["creditlimit"] == MONEY

    second = await dv.upsert("accounts", key, {"name": "Upsert two"}, select=["name"])
    assert second.created is False and second.id == first.id
    by_key = await dv.get("accounts", key=key, select=["name", "accountid"])
    assert by_key is not None and by_key["name"] == "Upsert two" and by_key["accountid"] == first.id
    assert await dv.delete("accounts", key=key) is True
    assert await dv.delete("accounts", key=key) is False


async def test_lookup_bound_by_alternate_key(dv: DataverseClient, unique: str) -> None:
    company = await company_id(dv)
    row_id = await dv.create("accounts", {
        "name": f"Bound {unique}", "accountnumber": f"BD-{unique}",
        "msdyn_company@odata.bind": dv.bind("cdm_companies", key={"cdm_companycode": "usmf"}),
        "transactioncurrencyid@odata.bind": dv.bind("transactioncurrencies", key={"isocurrencycode": "EUR"}),
        "msdyn_customergroupid@odata.bind": dv.bind(
            "msdyn_customergroups", key={"msdyn_groupid": "20", "_msdyn_company_value": company}),
    })
    row = await dv.get("accounts", row_id, select=["_transactioncurrencyid_value", "_msdyn_customergroupid_value"])
    eur = await dv.query("transactioncurrencies", filter="isocurrencycode eq 'EUR'", select=["transactioncurrencyid"])
    group = await dv.get("msdyn_customergroups", key={"msdyn_groupid": "20", "_msdyn_company_value": company})
    assert row is not None and group is not None
    assert row["_transactioncurrencyid_value"] == eur[0]["transactioncurrencyid"]
    assert row["_msdyn_customergroupid_value"] == group["msdyn_customergroupid"]
    await dv.delete("accounts", row_id)


async def test_query_follows_next_links(dv: DataverseClient) -> None:
    rows = await dv.query("accounts", filter="startswith(accountnumber,'US-0')", select=["accountnumber"],
                          page_size=7)
    numbers = {r["accountnumber"] for r in rows}
    assert len(rows) == len(numbers) >= 60  # the seed's US-001..US-060, over nine pages
    assert dv.stats.requests >= 9


async def test_validation_error_carries_the_full_body(dv: DataverseClient, unique: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await dv.create("accounts", {"name": "x" * 161, "accountnumber": f"VE-{unique}"})
    error = caught.value
    assert error.status == 400 and error.code == "0x80044331"
    assert "name" in error.message and "160" in error.message
    assert error.message in error.text and error.text.startswith("{") and '"error"' in error.text


async def test_stale_etag_is_a_conflict(dv: DataverseClient, unique: str) -> None:
    row_id = await dv.create("accounts", {"name": f"Etag {unique}", "accountnumber": f"ET-{unique}"})
    row = await dv.get("accounts", row_id, select=["name"])
    assert row is not None
    etag = row["@odata.etag"]
    await dv.update("accounts", row_id, {"name": "changed by someone else"})
    with pytest.raises(ConflictError) as caught:
        await dv.update("accounts", row_id, {"name": "late writer"}, if_match=etag)
    assert caught.value.status == 412
    await dv.delete("accounts", row_id)


def test_key_segment_literals_and_refusals() -> None:
    guid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert DataverseClient.key_segment({"accountnumber": "O'Brien", "_msdyn_company_value": guid}) == (
        f"accountnumber='O''Brien',_msdyn_company_value={guid}")
    assert DataverseClient.key_segment({"n": 5, "d": Decimal("1.50"), "b": True}) == "n=5,d=1.50,b=true"
    with pytest.raises(ValueError, match="accountnumber"):
        DataverseClient.key_segment({"accountnumber": "A/B"})
    with pytest.raises(ValueError, match="_msdyn_company_value"):
        DataverseClient.key_segment({"_msdyn_company_value": "usmf"})
    assert DataverseClient.bind("accounts", guid) == f"/accounts({guid})"


async def test_batch_of_50_creates_and_a_bad_part(dv: DataverseClient, unique: str) -> None:
    ops = [BatchOp("POST", "accounts", {"name": f"Batch {unique} {i}", "accountnumber": f"B{unique}-{i:02}",
                                        "creditlimit": MONEY}) for i in range(50)]
    results = await dv.batch(ops, atomic=True)
    assert [r.status for r in results] == [204] * 50
    rows = await dv.query("accounts", filter=f"startswith(accountnumber,'B{unique}-')", select=["creditlimit"])
    assert len(rows) == 50 and {r["creditlimit"] for r in rows} == {MONEY}

    mixed = [BatchOp("POST", "accounts", {"name": f"Good {unique}", "accountnumber": f"G{unique}"}),
             BatchOp("POST", "accounts", {"name": "y" * 200}),
             BatchOp("DELETE", "accounts(00000000-0000-0000-0000-00000000abcd)")]
    results = await dv.batch(mixed, continue_on_error=True)
    assert [r.status for r in results] == [204, 400, 404]
    assert results[1].json["error"]["code"] == "0x80044331"
    assert await dv.query("accounts", filter=f"accountnumber eq 'G{unique}'") != []


async def test_throttled_writes_all_land() -> None:
    sim: DataverseSim = start_dataverse("--limit-requests", "5", "--limit-window", "2")
    try:
        async with DataverseClient(sim.url, LocalTokens()) as dv:
            ids = [await dv.create("accounts", {"name": f"Throttled {i}", "accountnumber": f"TH-{i:03}"})
                   for i in range(12)]
            rows = await dv.query("accounts", filter="startswith(accountnumber,'TH-')", select=["accountnumber"])
            assert len(set(ids)) == 12
            assert sorted(r["accountnumber"] for r in rows) == [f"TH-{i:03}" for i in range(12)]
            assert dv.stats.throttled >= 1
    finally:
        sim.stop()



class FixedToken:
    def __init__(self, token: str) -> None:
        self.value = token

    async def token(self) -> str:
        if self.value == "refused":
            raise TokenError("AADSTS7000215: invalid client secret")
        return self.value


async def test_token_problems_fail_at_once(dataverse: DataverseSim) -> None:
    async with DataverseClient(dataverse.url, FixedToken("refused")) as dv:
        with pytest.raises(AuthFailed, match="AADSTS7000215"):
            await dv.get("accounts", "00000000-0000-0000-0000-00000000abcd")
        assert dv.stats.retried == 0
    async with DataverseClient(dataverse.url, FixedToken("")) as dv:  # "Bearer " is not a legal header value
        with pytest.raises(PermanentError):
            await dv.get("accounts", "00000000-0000-0000-0000-00000000abcd")
        assert dv.stats.retried == 0


async def test_batch_without_continue_on_error_stops_at_the_failing_part(dv: DataverseClient, unique: str) -> None:
    ops = [BatchOp("POST", "accounts", {"name": f"First {unique}", "accountnumber": f"S{unique}-1"}),
           BatchOp("POST", "accounts", {"name": "z" * 200}),
           BatchOp("POST", "accounts", {"name": f"Third {unique}", "accountnumber": f"S{unique}-3"})]
    results = await dv.batch(ops, continue_on_error=False)
    assert [r.status for r in results] == [204, 400]
    rows = await dv.query("accounts", filter=f"startswith(accountnumber,'S{unique}-')", select=["accountnumber"])
    assert [r["accountnumber"] for r in rows] == [f"S{unique}-1"]


async def test_key_with_url_unsafe_characters_falls_back_to_filter(dv: DataverseClient, unique: str) -> None:
    key = {"accountnumber": f"A/B&{unique}", "_msdyn_company_value": await company_id(dv)}
    row_id = await dv.create("accounts", {
        "name": "Slash", "accountnumber": key["accountnumber"],
        "msdyn_company@odata.bind": dv.bind("cdm_companies", key={"cdm_companycode": "usmf"})})
    with pytest.raises(ValueError, match="accountnumber"):
        await dv.get("accounts", key=key)
    rows = await dv.query("accounts", filter=dv.key_filter(key), select=["accountid"])
    assert [r["accountid"] for r in rows] == [row_id]
    await dv.delete("accounts", row_id)


async def test_create_multiple_answers_the_new_ids_in_order_and_refuses_all_for_one_bad_row(
        dv: DataverseClient, unique: str) -> None:
    company = dv.bind("cdm_companies", key={"cdm_companycode": "usmf"})
    bodies = [{"name": f"Multiple {unique} {n}", "accountnumber": f"CM-{unique}-{n}", "creditlimit": MONEY,
               "msdyn_company@odata.bind": company} for n in range(3)]
    ids = await dv.create_multiple("accounts", "account", bodies)
    assert len(ids) == 3
    for n, row_id in enumerate(ids):
        row = await dv.get("accounts", row_id, select=["accountnumber", "creditlimit"])
        assert row is not None and row["accountnumber"] == f"CM-{unique}-{n}" and row["creditlimit"] == MONEY
    bad = [{"name": f"Multiple {unique} ok", "accountnumber": f"CM-{unique}-ok", "msdyn_company@odata.bind": company},
           {"name": f"Multiple {unique} bad", "accountnumber": f"CM-{unique}-bad", "creditlimit": Decimal("-1"),
            "msdyn_company@odata.bind": company}]
    with pytest.raises(ValidationFailed):
        await dv.create_multiple("accounts", "account", bad)
    assert await dv.query("accounts", filter=f"accountnumber eq 'CM-{unique}-ok'") == []  # all or nothing
