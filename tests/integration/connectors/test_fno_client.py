"""FnoClient against the F&O simulator over HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.connectors import BatchOp, ConflictError, FnoClient, LocalTokens, ValidationFailed
from tests.fixtures.fno import start_fno

MONEY = Decimal("987654321.0123456789")  # 10 decimal places: a float would lose the tail


def customer(account: str, company: str = "usmf", **values: object) -> dict[str, object]:
    return {"dataAreaId": company, "CustomerAccount": account, "OrganizationName": f"Customer {account}",
            "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PartyType": "Organization", **values}


async def test_crud_round_trip_keeps_money_exact_and_enum_symbols(fo: FnoClient, unique: str) -> None:
    key = {"dataAreaId": "demf", "CustomerAccount": f"RT-{unique}"}  # not the caller's default company
    created = await fo.create("CustomersV3", customer(key["CustomerAccount"], "demf", CreditLimit=MONEY,
                                                      CreditLimitIsMandatory="Yes"))
    assert created["CreditLimit"] == MONEY and isinstance(created["CreditLimit"], Decimal)

    row = await fo.get("CustomersV3", key, select=["CreditLimit", "CreditLimitIsMandatory", "PartyType"])
    assert row is not None
    assert row["CreditLimit"] == MONEY
    assert (row["CreditLimitIsMandatory"], row["PartyType"]) == ("Yes", "Organization")

    await fo.update("CustomersV3", key, {"CreditLimit": MONEY + Decimal("0.0000000001")})
    row = await fo.get("CustomersV3", key, select=["CreditLimit"])
    assert row is not None and row["CreditLimit"] == Decimal("987654321.0123456790")

    assert await fo.delete("CustomersV3", key) is True
    assert await fo.delete("CustomersV3", key) is False
    assert await fo.get("CustomersV3", key) is None


async def test_upsert_creates_then_updates(fo: FnoClient, unique: str) -> None:
    key = {"dataAreaId": "usmf", "CustomerAccount": f"UP-{unique}"}
    body = {k: v for k, v in customer(key["CustomerAccount"]).items() if k not in key}
    assert await fo.upsert("CustomersV3", key, {**body, "CreditLimit": MONEY}) is True
    assert await fo.upsert("CustomersV3", key, {"OrganizationName": "Renamed"}) is False
    row = await fo.get("CustomersV3", key)
    assert row is not None and row["OrganizationName"] == "Renamed" and row["CreditLimit"] == MONEY
    assert await fo.delete("CustomersV3", key) is True


async def test_query_pages_across_companies(fo: FnoClient) -> None:
    rows = await fo.query("CustomersV3", filter="CustomerAccount eq 'US-0*' or CustomerAccount eq 'DE-0*'",
                          select=["dataAreaId", "CustomerAccount"], page_size=4)
    seen = {(r["dataAreaId"], r["CustomerAccount"]) for r in rows}
    assert len(seen) == len(rows) >= 15  # seed: US-001..US-010 in usmf, DE-001..DE-005 in demf
    assert {"usmf", "demf"} <= {company for company, _ in seen}
    assert fo.stats.requests >= 4
    own = await fo.query("CustomersV3", filter="CustomerAccount eq 'DE-0*'", cross_company=False)
    assert own == []  # the caller's default company is usmf


async def test_missing_record_is_none(fo: FnoClient) -> None:
    assert await fo.get("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": "NO-SUCH"}) is None


async def test_validation_errors_use_the_infolog_text(fo: FnoClient, unique: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await fo.create("CustomersV3", customer(f"VE-{unique}", CustomerGroupId="NOPE"))
    error = caught.value
    assert error.status == 400
    assert "NOPE" in error.message and error.message != "An error has occurred."
    assert error.message in error.text and "innererror" in error.text

    with pytest.raises(ValidationFailed, match=r"CustomerGroupId|Customer group"):
        await fo.create("CustomersV3", {k: v for k, v in customer(f"VM-{unique}").items() if k != "CustomerGroupId"})


async def test_stale_etag_is_a_conflict(fo: FnoClient, unique: str) -> None:
    key = {"dataAreaId": "usmf", "CustomerAccount": f"ET-{unique}"}
    etag = (await fo.create("CustomersV3", customer(key["CustomerAccount"])))["@odata.etag"]
    await fo.update("CustomersV3", key, {"OrganizationName": "changed by someone else"})
    with pytest.raises(ConflictError) as caught:
        await fo.update("CustomersV3", key, {"OrganizationName": "late writer"}, if_match=etag)
    assert caught.value.status == 412
    await fo.delete("CustomersV3", key)


async def test_batch_50_creates_per_part_errors_and_atomic_rollback(fo: FnoClient, unique: str) -> None:
    results = await fo.batch([BatchOp("POST", "CustomersV3", customer(f"B{unique}-{i:02}", CreditLimit=MONEY))
                              for i in range(50)], atomic=True)
    assert [r.status for r in results] == [201] * 50
    rows = await fo.query("CustomersV3", filter=f"CustomerAccount eq 'B{unique}-*'", select=["CreditLimit"])
    assert len(rows) == 50 and {r["CreditLimit"] for r in rows} == {MONEY}

    mixed = await fo.batch([BatchOp("POST", "CustomersV3", customer(f"G{unique}")),
                            BatchOp("POST", "CustomersV3", customer(f"H{unique}", CustomerGroupId="NOPE")),
                            BatchOp("GET", fo.address("CustomersV3", {"dataAreaId": "usmf",
                                                                      "CustomerAccount": f"G{unique}"}))])
    assert [r.status for r in mixed] == [201, 400, 200]
    assert "NOPE" in mixed[1].json["error"]["innererror"]["message"]
    assert mixed[2].json["CustomerAccount"] == f"G{unique}"

    atomic = await fo.batch([BatchOp("POST", "CustomersV3", customer(f"A{unique}-1")),
                             BatchOp("POST", "CustomersV3", customer(f"A{unique}-2", CustomerGroupId="NOPE")),
                             BatchOp("POST", "CustomersV3", customer(f"A{unique}-3"))], atomic=True)
    assert len(atomic) == 1 and atomic[0].status == 400  # a failed changeset answers with its failing part
    assert await fo.query("CustomersV3", filter=f"CustomerAccount eq 'A{unique}-*'") == []


def test_key_segment_quotes_and_encodes() -> None:
    assert FnoClient.key_segment({"dataAreaId": "usmf", "CustomerAccount": "O'Neil"}) == (
        "dataAreaId='usmf',CustomerAccount='O''Neil'")
    assert FnoClient.key_segment({"LineNum": 3}) == "LineNum=3"
    assert FnoClient.key_segment({"ItemNumber": "A/B?C"}) == "ItemNumber='A%2FB%3FC'"
    with pytest.raises(ValueError, match="CustomerAccount"):
        FnoClient.key_segment({"CustomerAccount": None})


async def test_throttled_writes_all_land() -> None:
    sim = start_fno("fno-throttled", rate_limit=3, rate_window=1)
    try:
        async with FnoClient(sim.url, LocalTokens()) as fo:
            for i in range(10):
                await fo.create("CustomersV3", customer(f"TH-{i:03}"))
            rows = await fo.query("CustomersV3", filter="CustomerAccount eq 'TH-*'", select=["CustomerAccount"])
            assert sorted(r["CustomerAccount"] for r in rows) == [f"TH-{i:03}" for i in range(10)]
            assert fo.stats.throttled >= 1
    finally:
        sim.process.stop()
