"""The apply engine (core.sync.apply.Applier) over the real sides and in-memory connectors."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.events.model import lookup_ref
from core.store.links import Link
from core.sync.errors import (
    BadChange,
    ConflictSkipped,
    LinkContention,
    LookupPending,
    TargetGone,
    category_of,
    is_transient,
)
from tests.unit.sync.world import ENGINE_USER, T0, World, customer, earlier, vendor

USMF_001 = {"dataAreaId": "usmf", "CustomerAccount": "US-001"}


# -- F&O -> Dataverse --------------------------------------------------------------------------------
async def test_first_fno_change_upserts_the_whole_account_by_alternate_key(world: World) -> None:
    world.fo.add("CustomersV3", customer())
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert (result.outcome, result.reason, result.key) == ("applied", "created", "USMF|US-001")
    [write] = world.dv.writes()
    assert write.method == "upsert"
    assert write.target == {"_msdyn_company_value": world.company_id, "accountnumber": "US-001"}
    assert write.body["name"] == "Contoso Retail"
    assert write.body["customertypecode"] == 3
    assert write.body["msdyn_customergroupid@odata.bind"] == f"/msdyn_customergroups({world.group_id})"
    link = await world.links.get("customers", ("USMF", "US-001"))
    assert link is not None and link.state == "linked" and link.dataverse_id == result.target_id
    assert link.fno_key == USMF_001


async def test_fno_update_writes_only_the_changed_columns(world: World) -> None:
    row_id = await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Wholesale"
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert (result.outcome, result.reason) == ("applied", "updated name")
    [write] = world.dv.writes()
    assert (write.method, write.target, write.body) == ("update", row_id, {"name": "Contoso Wholesale"})
    assert world.account_row()["name"] == "Contoso Wholesale"


async def test_dataverse_echo_of_our_write_is_skipped_and_writes_nothing(world: World) -> None:
    row_id = await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Wholesale"
    await world.applier.apply(world.fno_event("customers", USMF_001))
    # The webhook of that PATCH: a partial Target with the column written, by the engine's user.
    echo = world.dv_event("customers", row_id, values={"name": "Contoso Wholesale"}, version="101",
                          initiated_by=ENGINE_USER)
    result = await world.applier.apply(echo)
    assert result.outcome == "skipped" and result.reason.startswith("echo"), result
    assert world.fo.writes() == []


async def test_late_echo_of_an_earlier_engine_write_is_not_sent_back(world: World) -> None:
    row_id = await world.linked_customer()
    record = world.fo.record("CustomersV3", **USMF_001)
    images = []
    for name in ("Contoso One", "Contoso Two"):  # two F&O renames, each written to Dataverse
        record["OrganizationName"] = name
        assert (await world.applier.apply(world.fno_event("customers", USMF_001))).outcome == "applied"
        images.append(world.image(row_id))  # what the webhook of that write carries
    # The webhook of the first write arrives after the second write (async webhooks are not ordered).
    late = world.dv_event("customers", row_id, values=images[0], initiated_by=ENGINE_USER)
    result = await world.applier.apply(late)
    assert result.outcome == "skipped" and result.reason.startswith("stale"), result
    assert world.fo.writes() == [] and record["OrganizationName"] == "Contoso Two"
    current = world.dv_event("customers", row_id, values=images[1], initiated_by=ENGINE_USER)
    assert (await world.applier.apply(current)).reason.startswith("echo")


async def test_dataverse_save_that_changes_no_mapped_value_writes_nothing(world: World) -> None:
    row_id = await world.linked_customer()
    # Another user saved the account with the values it already had (no engine user to recognise).
    result = await world.applier.apply(world.dv_event("customers", row_id, values={"name": "Contoso Retail"}))
    assert result.outcome == "skipped" and result.reason.startswith(("echo", "no-op")), result
    assert world.fo.writes() == []


async def test_change_to_an_unmapped_fno_column_is_skipped(world: World) -> None:
    await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["InvoiceAccount"] = "US-999"
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert result.outcome == "skipped", result
    assert world.dv.writes() == []


async def test_change_to_an_unmapped_dataverse_column_is_skipped(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["revenue"] = Decimal("5000000")
    result = await world.applier.apply(world.dv_event("customers", row_id, values={"revenue": "5000000"}))
    assert result.outcome == "skipped", result
    assert world.fo.writes() == []


async def test_filtered_out_fno_record_is_skipped(world: World) -> None:
    world.fo.add("CustomersV3", customer(PartyType="Person"))
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert result.outcome == "skipped" and "filtered out" in result.reason
    assert world.dv.writes() == []
    assert await world.links.get("customers", ("USMF", "US-001")) is None


async def test_filtered_out_dataverse_row_is_skipped(world: World) -> None:
    row_id = world.add_account(customertypecode=1)  # a competitor, not a customer
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch"))
    assert result.outcome == "skipped" and "filtered out" in result.reason
    assert world.fo.writes() == []


async def test_fno_record_gone_before_the_read_is_skipped(world: World) -> None:
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert result.outcome == "skipped" and "no longer exists" in result.reason
    assert world.dv.writes() == []


async def test_company_code_case_does_not_matter(world: World) -> None:
    row_id = await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["AddressCity"] = "Tacoma"
    result = await world.applier.apply(world.fno_event("customers", {"dataAreaId": "USMF",
                                                                     "CustomerAccount": "US-001"}))
    assert (result.outcome, result.key, result.target_id) == ("applied", "USMF|US-001", row_id)
    [write] = world.dv.writes()
    assert (write.method, write.body) == ("update", {"address1_city": "Tacoma"})
    assert len(world.links.rows) == 1
    assert len(world.dv.tables["accounts"]) == 1


# -- Dataverse -> F&O --------------------------------------------------------------------------------
async def test_partial_dataverse_target_is_completed_by_a_read(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id].update(name="Contoso Outlet", telephone1="+1 555 0199")
    # The Target carries only `name`; the telephone changed in the same save is only in the row.
    result = await world.applier.apply(world.dv_event("customers", row_id, values={"name": "Contoso Outlet"},
                                                      version="200"))
    assert result.outcome == "applied", result
    assert any(c.method == "get" and c.entity_set == "accounts" for c in world.dv.calls)
    [write] = world.fo.writes()
    assert (write.method, write.target) == ("update", USMF_001)
    assert write.body == {"OrganizationName": "Contoso Outlet", "PrimaryContactPhone": "+1 555 0199"}


async def test_refetch_rereads_the_row(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["address1_city"] = "Bellevue"
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch"))
    assert result.outcome == "applied", result
    assert world.fo.record("CustomersV3", **USMF_001)["AddressCity"] == "Bellevue"
    [write] = world.fo.writes()
    assert write.body == {"AddressCity": "Bellevue"}


async def test_new_dataverse_account_creates_the_fno_customer(world: World) -> None:
    row_id = world.add_account("US-050", name="Northwind")
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch"))
    assert (result.outcome, result.key) == ("applied", "USMF|US-050"), result
    created = world.fo.row("CustomersV3", dataAreaId="usmf", CustomerAccount="US-050")
    assert created is not None and created["OrganizationName"] == "Northwind"
    assert created["PartyType"] == "Organization" and created["CustomerGroupId"] == "10"
    link = await world.links.find("customers", "dataverse", row_id)
    assert link is not None and link.fno_key == {"dataAreaId": "usmf", "CustomerAccount": "US-050"}


async def test_stale_dataverse_rowversion_is_skipped(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Newest"
    assert (await world.applier.apply(world.dv_event("customers", row_id, "refetch", version="300"))).outcome \
        == "applied"
    world.fo.calls.clear()
    world.dv.tables["accounts"][row_id]["name"] = "Older"  # what an out-of-order delivery would read
    result = await world.applier.apply(world.dv_event("customers", row_id, values={"name": "Older"},
                                                      version="250"))
    assert result.outcome == "skipped" and result.reason.startswith("stale"), result
    assert world.fo.writes() == []
    assert world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] == "Newest"


async def test_ten_decimal_money_is_exact_both_ways(world: World) -> None:
    amount = Decimal("123456.1234567891")
    row_id = await world.linked_customer(CreditLimit=amount)
    stored = world.account_row()["creditlimit"]
    assert isinstance(stored, Decimal) and stored == amount
    back = Decimal("98765432.0000000001")
    world.dv.tables["accounts"][row_id]["creditlimit"] = back
    result = await world.applier.apply(world.dv_event("customers", row_id, values={"creditlimit": str(back)}))
    assert result.outcome == "applied", result
    [write] = world.fo.writes()
    assert write.body == {"CreditLimit": back}
    kept = world.fo.record("CustomersV3", **USMF_001)["CreditLimit"]
    assert isinstance(kept, Decimal) and str(kept) == "98765432.0000000001"


# -- conflicts ---------------------------------------------------------------------------------------
async def _linked_vendor(world: World) -> str:
    world.fo.add("VendorsV2", vendor())
    result = await world.applier.apply(world.fno_event("vendors", {"dataAreaId": "usmf",
                                                                   "VendorAccountNumber": "V-001"}, at=T0))
    assert result.outcome == "applied", result
    world.fo.calls.clear()
    world.dv.calls.clear()
    return result.target_id or ""


async def test_primary_wins_refuses_a_dataverse_change_of_a_column_fno_changed(world: World) -> None:
    row_id = await _linked_vendor(world)
    world.fo.record("VendorsV2", dataAreaId="usmf", VendorAccountNumber="V-001")["VendorOrganizationName"] = "F&O name"
    world.dv.tables["msdyn_vendors"][row_id]["msdyn_vendorname"] = "Dataverse name"
    with pytest.raises(ConflictSkipped) as caught:
        await world.applier.apply(world.dv_event("vendors", row_id, "refetch"))
    assert "VendorOrganizationName" in str(caught.value) and "primary wins" in str(caught.value)
    assert category_of(caught.value) == "conflict" and not is_transient(caught.value)
    assert world.fo.writes() == []


async def test_primary_wins_applies_a_dataverse_change_of_a_column_fno_left_alone(world: World) -> None:
    row_id = await _linked_vendor(world)
    world.fo.record("VendorsV2", dataAreaId="usmf", VendorAccountNumber="V-001")["VendorOrganizationName"] = "F&O name"
    world.dv.tables["msdyn_vendors"][row_id]["msdyn_addresscity"] = "Kirkland"
    result = await world.applier.apply(world.dv_event("vendors", row_id, "refetch"))
    assert result.outcome == "applied", result
    [write] = world.fo.writes()
    assert write.body == {"AddressCity": "Kirkland"}


async def test_latest_wins_writes_the_later_version_back_over_an_older_change(world: World) -> None:
    row_id = await world.linked_customer()  # the F&O change was at T0
    world.dv.tables["accounts"][row_id]["name"] = "Made before T0"
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=earlier(5)))
    assert result.outcome == "applied" and result.reason.startswith("conflict, latest wins: F&O changed "
                                                                    "OrganizationName at ")  # at its creation
    assert result.reason.endswith("the later F&O version was written back to Dataverse: name")
    assert world.fo.writes() == []  # the older change does not reach F&O
    assert world.account_row()["name"] == "Contoso Retail"  # and Dataverse holds F&O's version again
    # its echo (had it one) is recognised: both sides agree and the link knows it
    again = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=earlier(4)))
    assert again.outcome == "skipped" and again.reason.startswith("echo")


async def test_latest_wins_leaves_an_older_change_alone_when_its_side_changed_again(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Made before T0"
    side = world.applier.dataverse
    read_linked = side.read_linked

    async def changed_since(table_map: Any, link: Any) -> Any:  # a later edit lands while this one is applied
        world.dv.tables["accounts"][row_id]["name"] = "Made after T0"
        return await read_linked(table_map, link)

    side.read_linked = changed_since  # type: ignore[method-assign]
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=earlier(5)))
    assert result.outcome == "skipped" and "changed the record again since" in result.reason
    assert world.dv.writes() == [] and world.fo.writes() == []


async def test_latest_wins_is_by_column_a_later_phone_change_does_not_undo_an_earlier_rename(world: World) -> None:
    row_id = await world.linked_customer()
    # Dataverse changes the phone at +5 min and that is applied first ...
    world.dv.tables["accounts"][row_id]["telephone1"] = "+1 555 0199"
    phone = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=T0 + timedelta(minutes=5)))
    assert phone.outcome == "applied", phone
    # ... then F&O's rename made at +1 min arrives: no later change touched the name, so it goes across.
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Renamed"
    world.dv.calls.clear()
    world.fo.calls.clear()
    rename = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=1)))
    assert (rename.outcome, rename.reason) == ("applied", "updated name"), rename
    assert world.account_row()["name"] == "Contoso Renamed" and world.account_row()["telephone1"] == "+1 555 0199"
    assert world.fo.writes() == []
    assert world.fo.record("CustomersV3", **USMF_001)["PrimaryContactPhone"] == "+1 555 0199"


async def test_latest_wins_writes_back_only_the_columns_changed_later_and_sends_the_rest(world: World) -> None:
    row_id = await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "F&O name"
    later = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=5)))
    assert later.outcome == "applied", later
    # A Dataverse edit made at +1 min of the name and the city, delivered after F&O's rename was applied
    # (read from a webhook image: Dataverse's current row already holds F&O's name again).
    world.dv.tables["accounts"][row_id]["address1_city"] = "Tacoma"
    world.dv.calls.clear()
    older = world.dv_event("customers", row_id, "update", at=T0 + timedelta(minutes=1),
                           values={**world.account_row(), "name": "Dataverse name"})
    world.dv.tables["accounts"][row_id]["name"] = "Dataverse name"  # as when the webhook fired
    result = await world.applier.apply(older)
    assert result.outcome == "applied", result
    assert result.reason.startswith("conflict, latest wins: F&O changed OrganizationName at ")
    assert result.reason.endswith("the later F&O version was written back to Dataverse: name; this change's other "
                                  "columns were written to F&O: AddressCity")
    assert world.account_row()["name"] == "F&O name" and world.account_row()["address1_city"] == "Tacoma"
    record = world.fo.record("CustomersV3", **USMF_001)
    assert (record["OrganizationName"], record["AddressCity"]) == ("F&O name", "Tacoma")
    # both sides agree and the link knows it: the echoes change nothing
    echo = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=6)))
    assert echo.outcome == "skipped" and echo.reason.startswith("echo"), echo


async def test_a_webhook_image_older_than_the_engines_last_write_is_read_again(world: World) -> None:
    row_id = await world.linked_customer()
    # Dataverse's phone changed at +1 min (its image still shows the old name) while the map was paused ...
    image = {**world.image(row_id), "telephone1": "+1 555 0199"}
    world.dv.tables["accounts"][row_id]["telephone1"] = "+1 555 0199"
    # ... and F&O's rename of +2 min is applied first: the engine writes the name into Dataverse.
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Renamed"
    renamed = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=2)))
    assert renamed.outcome == "applied", renamed
    world.fo.calls.clear()
    phone = await world.applier.apply(world.dv_event("customers", row_id, "update", values=image,
                                                     at=T0 + timedelta(minutes=1)))
    assert (phone.outcome, phone.reason) == ("applied", "updated PrimaryContactPhone"), phone
    [write] = world.fo.writes()
    assert write.body == {"PrimaryContactPhone": "+1 555 0199"}  # the image's old name is not sent back
    assert world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] == "Contoso Renamed"


async def test_latest_wins_applies_a_later_dataverse_change(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Made after T0"
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=T0 + timedelta(minutes=5)))
    assert result.outcome == "applied", result


async def test_latest_wins_reads_fno_first_and_a_later_change_there_not_synced_yet_wins(world: World) -> None:
    # Dataverse renames at +1 min; F&O renames at +2 min, and its event has not come yet: the link knows nothing of it.
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Dataverse name"
    fno_row = world.fo.record("CustomersV3", **USMF_001)
    fno_row.update(OrganizationName="F&O name", ModifiedDateTime="2026-01-05T09:02:00Z")
    world.dv.calls.clear()
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=T0 + timedelta(minutes=1)))
    assert result.outcome == "applied", result
    assert result.reason.startswith("conflict, latest wins: F&O changed OrganizationName at 2026-01-05T09:02:00")
    assert result.reason.endswith("the later F&O version was written back to Dataverse: name")
    assert world.fo.writes() == [] and fno_row["OrganizationName"] == "F&O name"  # not overwritten
    assert world.account_row()["name"] == "F&O name"
    # F&O's own event, when it comes, finds both sides agreeing
    echo = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=2)))
    assert echo.outcome == "skipped" and echo.reason.startswith(("echo", "no-op")), echo


async def test_latest_wins_overwrites_an_earlier_change_not_synced_yet_and_says_so(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Dataverse name"
    world.fo.record("CustomersV3", **USMF_001).update(
        OrganizationName="F&O name", ModifiedDateTime="2026-01-05T09:02:00Z"
    )
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch", at=T0 + timedelta(minutes=3)))
    assert result.outcome == "applied", result
    assert result.reason == (
        "updated OrganizationName; conflict, latest wins: this change (2026-01-05T09:03:00+00:00) "
        "overwrote F&O's earlier change of OrganizationName at 2026-01-05T09:02:00+00:00 "
        "(not synced yet)"
    )
    assert world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] == "Dataverse name"


async def test_a_change_whose_write_landed_before_its_delivery_was_cut_off_is_not_written_again(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Dataverse name"
    change = world.dv_event("customers", row_id, "refetch", at=T0 + timedelta(minutes=3))
    # the first delivery wrote F&O, then the host died before the link was saved
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Dataverse name"
    world.fo.calls.clear()
    result = await world.applier.apply(change)
    assert (result.outcome, result.reason) == (
        "applied",
        "updated OrganizationName, found written already: an "
        "earlier attempt of this change wrote it and was cut off before "
        "recording it",
    ), result
    assert world.fo.writes() == []
    link = await world.links.get("customers", ("USMF", "US-001"))
    assert link is not None and link.values["fno"]["OrganizationName"] == "Dataverse name"


# -- deletes -----------------------------------------------------------------------------------------
async def test_fno_delete_by_link_and_its_echo_is_skipped(world: World) -> None:
    row_id = await world.linked_customer()
    world.fo.tables["CustomersV3"].clear()
    result = await world.applier.apply(world.fno_event("customers", USMF_001, "delete"))
    assert (result.outcome, result.reason) == ("applied", "deleted")
    [write] = world.dv.writes()
    assert (write.method, write.target) == ("delete", row_id)
    assert world.account() is None
    link = await world.links.get("customers", ("USMF", "US-001"))
    assert link is not None and link.state == "deleted"
    # Dataverse's webhook of that delete: found by its pre image's key, the tombstone makes it an echo.
    echo = world.dv_event("customers", row_id, "delete",
                          pre={"accountnumber": "US-001", "msdyn_company": world.company_ref()})
    result = await world.applier.apply(echo)
    assert result.outcome == "skipped" and result.reason.startswith("echo"), result
    assert world.fo.writes() == []


async def test_dataverse_delete_by_link_and_its_echo_is_skipped(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"].pop(row_id)
    result = await world.applier.apply(world.dv_event("customers", row_id, "delete"))
    assert (result.outcome, result.reason) == ("applied", "deleted")
    [write] = world.fo.writes()
    assert (write.method, write.target) == ("delete", USMF_001)
    assert world.fo.row("CustomersV3", **USMF_001) is None
    echo = await world.applier.apply(world.fno_event("customers", {"dataAreaId": "USMF",
                                                                   "CustomerAccount": "US-001"}, "delete"))
    assert echo.outcome == "skipped" and echo.reason.startswith("echo"), echo
    assert [c for c in world.dv.writes() if c.method == "delete"] == []


async def test_dataverse_delete_without_link_goes_by_pre_image(world: World) -> None:
    world.fo.add("CustomersV3", customer("US-077"))  # the same customer on both sides, never synced
    row_id = world.add_account("US-077")
    world.dv.tables["accounts"].pop(row_id)
    event = world.dv_event("customers", row_id, "delete",
                           pre={"accountnumber": "US-077", "msdyn_company": world.company_ref()})
    result = await world.applier.apply(event)
    assert (result.outcome, result.key) == ("applied", "USMF|US-077"), result
    assert world.fo.row("CustomersV3", dataAreaId="usmf", CustomerAccount="US-077") is None
    link = await world.links.get("customers", ("USMF", "US-077"))
    assert link is not None and link.state == "deleted"


async def test_fno_delete_without_link_goes_by_alternate_key(world: World) -> None:
    world.add_account("US-078")
    result = await world.applier.apply(world.fno_event("customers", {"dataAreaId": "usmf",
                                                                     "CustomerAccount": "US-078"}, "delete"))
    assert result.outcome == "applied", result
    [write] = world.dv.writes()
    assert write.target == {"_msdyn_company_value": world.company_id, "accountnumber": "US-078"}
    assert world.account("US-078") is None


async def test_dataverse_delete_of_a_row_never_synced_without_key_is_skipped(world: World) -> None:
    result = await world.applier.apply(world.dv_event("customers", "4f1d3c6e-0000-0000-0000-000000000001",
                                                      "delete"))
    assert result.outcome == "skipped" and "never synced" in result.reason
    assert world.fo.writes() == []


# -- lookups and link races ----------------------------------------------------------------------------
async def test_missing_lookup_parent_in_dataverse_is_lookup_pending(world: World) -> None:
    world.fo.add("CustomersV3", customer(CustomerGroupId="99"))
    with pytest.raises(LookupPending) as caught:
        await world.applier.apply(world.fno_event("customers", USMF_001))
    assert is_transient(caught.value) and category_of(caught.value) == "lookup_pending"
    assert "msdyn_customergroupid" in str(caught.value)
    assert world.dv.writes() == []
    assert world.links.rows == {}


async def test_missing_lookup_parent_in_fno_is_lookup_pending(world: World) -> None:
    group = world.dv.add("msdyn_customergroups", {"msdyn_groupid": "20", "_msdyn_company_value": world.company_id})
    row_id = world.add_account("US-051", _msdyn_customergroupid_value=group)  # group 20 not yet in F&O
    with pytest.raises(LookupPending) as caught:
        await world.applier.apply(world.dv_event("customers", row_id, "refetch"))
    assert category_of(caught.value) == "lookup_pending" and "CustomerGroups" in str(caught.value)
    assert world.fo.writes() == []
    world.fo.add("CustomerGroups", {"dataAreaId": "usmf", "CustomerGroupId": "20"})  # the parent arrives
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch"))
    assert result.outcome == "applied", result
    assert world.fo.record("CustomersV3", dataAreaId="usmf", CustomerAccount="US-051")["CustomerGroupId"] == "20"


async def test_link_conflict_on_save_is_decided_again_and_then_succeeds(world: World) -> None:
    await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["AddressZipCode"] = "98101"
    world.links.before_save.append(lambda link: world.links.bump(link.map, link.key))
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert result.outcome == "applied", result
    assert world.links.conflicts == 1
    link = await world.links.get("customers", ("USMF", "US-001"))
    assert link is not None and link.values["fno"]["AddressZipCode"] == "98101"
    assert world.account_row()["address1_postalcode"] == "98101"


async def test_link_that_keeps_changing_is_transient_contention(world: World) -> None:
    await world.linked_customer()
    world.fo.record("CustomersV3", **USMF_001)["AddressZipCode"] = "98101"

    def interfere(link: object) -> None:
        world.links.bump("customers", ("USMF", "US-001"))
        world.links.before_save.append(interfere)

    world.links.before_save.append(interfere)
    with pytest.raises(LinkContention) as caught:
        await world.applier.apply(world.fno_event("customers", USMF_001))
    world.links.before_save.clear()
    assert is_transient(caught.value)
    assert world.links.conflicts == 4


async def test_lookup_given_as_row_id_in_a_full_create_image(world: World) -> None:
    row_id = world.add_account("US-052", name="Tailspin")
    row = world.dv.tables["accounts"][row_id]
    values = {k: v for k, v in row.items() if not k.startswith("_")}
    values |= {"msdyn_company": world.company_ref(),
               "msdyn_customergroupid": lookup_ref("msdyn_customergroup", world.group_id),
               "transactioncurrencyid": lookup_ref("transactioncurrency", world.currency_id)}
    result = await world.applier.apply(world.dv_event("customers", row_id, "create", values=values))
    assert result.outcome == "applied", result
    assert not any(c.method == "get" and c.entity_set == "accounts" for c in world.dv.calls)
    created = world.fo.row("CustomersV3", dataAreaId="usmf", CustomerAccount="US-052")
    assert created is not None and created["SalesCurrencyCode"] == "USD" and created["PaymentTerms"] == ""


async def test_fno_echo_of_a_dataverse_create_is_skipped(world: World) -> None:
    row_id = world.add_account("US-053", name="Litware", description="Prefers email")
    assert (await world.applier.apply(world.dv_event("customers", row_id, "refetch", version="10"))).outcome \
        == "applied"
    world.dv.calls.clear()
    # F&O's data event of the customer the engine just created.
    result = await world.applier.apply(world.fno_event("customers", {"dataAreaId": "usmf",
                                                                     "CustomerAccount": "US-053"}, "create"))
    assert result.outcome == "skipped" and result.reason.startswith("echo"), result
    assert world.dv.writes() == []
    assert world.fo.record("CustomersV3", dataAreaId="usmf", CustomerAccount="US-053")["SalesMemo"] == "Prefers email"


async def test_cleared_lookup_travels_as_empty_text_to_fno_and_back_as_a_bind(world: World) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["_msdyn_paymentterm_value"] = None
    result = await world.applier.apply(world.dv_event("customers", row_id, "refetch"))
    assert result.outcome == "applied", result
    [write] = world.fo.writes()
    assert write.body == {"PaymentTerms": ""}  # F&O has no nulls
    world.fo.record("CustomersV3", **USMF_001)["PaymentTerms"] = "Net30"
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert result.outcome == "applied", result
    [write] = world.dv.writes()
    assert write.body == {"msdyn_paymentterm@odata.bind": f"/msdyn_paymentterms({world.terms_id})"}


async def test_full_dataverse_image_from_the_queue_keeps_ten_decimals(world: World) -> None:
    row_id = world.add_account("US-054", creditlimit=Decimal("5.0000000001"), description="")
    row = world.dv.tables["accounts"][row_id]
    values = {k: v for k, v in row.items() if not k.startswith("_")}
    values |= {"msdyn_company": world.company_ref(),
               "msdyn_customergroupid": lookup_ref("msdyn_customergroup", world.group_id),
               "transactioncurrencyid": lookup_ref("transactioncurrency", world.currency_id),
               "msdyn_paymentterm": lookup_ref("msdyn_paymentterm", world.terms_id), "primarycontactid": None}
    event = world.dv_event("customers", row_id, "update", values=values)
    # Through the queue: JSON, Decimal as text.
    result = await world.applier.apply(type(event).from_json(event.to_json()))
    assert result.outcome == "applied", result
    assert not any(c.method == "get" and c.entity_set == "accounts" for c in world.dv.calls)  # image was enough
    created = world.fo.row("CustomersV3", dataAreaId="usmf", CustomerAccount="US-054")
    assert created is not None and created["CreditLimit"] == Decimal("5.0000000001")
    assert isinstance(created["CreditLimit"], Decimal)


async def test_first_sync_racing_another_writer_of_the_link_decides_again(world: World) -> None:
    world.fo.add("CustomersV3", customer())

    def other_writer_saves_first(link: Link) -> None:
        # Another delivery of this record wrote the same account and inserted the link just before us.
        world.links.rows[("customers", "USMF|US-001")] = replace(copy.deepcopy(link), etag="W/other")

    world.links.before_save.append(other_writer_saves_first)
    result = await world.applier.apply(world.fno_event("customers", USMF_001))
    assert world.links.conflicts == 1  # our insert did not overwrite the other writer's link
    assert result.outcome == "skipped" and result.reason.startswith("echo"), result
    assert world.links.rows[("customers", "USMF|US-001")].etag == "W/other"
    assert len(world.dv.tables["accounts"]) == 1


async def test_echo_of_our_write_does_not_count_as_a_later_change_for_latest_wins(world: World) -> None:
    row_id = await world.linked_customer()  # F&O change at T0
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "First edit"
    first = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=1)))
    assert first.outcome == "applied", first
    # Our PATCH landed at +3 min; its webhook is recognised as our echo.
    echo = world.dv_event("customers", row_id, values={"name": "First edit"}, version="500",
                          at=T0 + timedelta(minutes=3), initiated_by=ENGINE_USER)
    assert (await world.applier.apply(echo)).reason.startswith("echo")
    # A second F&O edit made at +2 min, delivered after the echo: nobody else changed the account.
    world.fo.record("CustomersV3", **USMF_001)["AddressCity"] = "Spokane"
    second = await world.applier.apply(world.fno_event("customers", USMF_001, at=T0 + timedelta(minutes=2)))
    assert second.outcome == "applied", second
    assert world.account_row()["address1_city"] == "Spokane"


async def test_account_deleted_behind_the_link_waits_for_its_delete_instead_of_coming_back(world: World) -> None:
    old_id = await world.linked_customer()
    world.dv.tables["accounts"].pop(old_id)  # deleted in Dataverse; its delete event has not come yet
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Again"
    change = world.fno_event("customers", USMF_001)
    with pytest.raises(TargetGone, match="no longer exists") as caught:
        await world.applier.apply(change)
    assert is_transient(caught.value) and category_of(caught.value) == "conflict"
    assert [c.method for c in world.dv.writes()] == ["update"] and world.account() is None  # nothing revived
    # The delete arrives and takes the customer away in F&O; the retried change then finds nothing to do.
    deleted = await world.applier.apply(world.dv_event("customers", old_id, "delete"))
    assert deleted.outcome == "applied", deleted
    retried = await world.applier.apply(change)
    assert retried.outcome == "skipped" and "no longer exists" in retried.reason, retried
    assert world.account() is None


async def test_account_deleted_behind_the_link_is_written_again_on_the_last_attempt(world: World) -> None:
    old_id = await world.linked_customer()
    world.dv.tables["accounts"].pop(old_id)  # its delete never arrives (the step was off, say)
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Again"
    result = await world.applier.apply(world.fno_event("customers", USMF_001), last_attempt=True)
    assert result.outcome == "applied" and result.reason.startswith("created again"), result
    assert [c.method for c in world.dv.writes()] == ["update", "upsert"]
    account = world.account()
    assert account is not None and account["name"] == "Contoso Again" and account["accountid"] != old_id
    link = await world.links.get("customers", ("USMF", "US-001"))
    assert link is not None and link.dataverse_id == account["accountid"]


async def test_customer_deleted_behind_the_link_waits_then_is_created_again_in_fno(world: World) -> None:
    row_id = await world.linked_customer()
    world.fo.tables["CustomersV3"].clear()
    world.dv.tables["accounts"][row_id]["name"] = "Contoso Revived"
    change = world.dv_event("customers", row_id, "refetch", at=T0 + timedelta(hours=1))
    with pytest.raises(TargetGone, match="F&O"):
        await world.applier.apply(change)
    assert world.fo.row("CustomersV3", **USMF_001) is None
    result = await world.applier.apply(change, last_attempt=True)
    assert result.outcome == "applied", result
    revived = world.fo.row("CustomersV3", **USMF_001)
    assert revived is not None and revived["OrganizationName"] == "Contoso Revived"
    assert revived["CustomerGroupId"] == "10" and revived["PartyType"] == "Organization"


async def test_primary_wins_is_no_conflict_when_both_sides_made_the_same_change(world: World) -> None:
    row_id = await _linked_vendor(world)
    world.fo.record("VendorsV2", dataAreaId="usmf", VendorAccountNumber="V-001")["VendorOrganizationName"] = "Same"
    world.dv.tables["msdyn_vendors"][row_id]["msdyn_vendorname"] = "Same"
    result = await world.applier.apply(world.dv_event("vendors", row_id, "refetch"))
    assert result.outcome == "applied" and result.reason.endswith("found written already: an earlier attempt of "
                                                                  "this change wrote it and was cut off before "
                                                                  "recording it"), result
    assert world.fo.writes() == []  # F&O holds it: no second write, no echo of one
    link = await world.links.get("vendors", ("USMF", "V-001"))
    assert link is not None and link.values["fno"]["VendorOrganizationName"] == "Same"
    # the next change of the same column is judged against what the link now knows: applied, not refused
    world.dv.tables["msdyn_vendors"][row_id]["msdyn_vendorname"] = "Later"
    later = await world.applier.apply(world.dv_event("vendors", row_id, "refetch"))
    assert later.outcome == "applied", later
    [write] = world.fo.writes()
    assert write.body == {"VendorOrganizationName": "Later"}


async def test_changes_that_cannot_be_read_are_bad_changes_naming_what_is_missing(world: World) -> None:
    with pytest.raises(BadChange, match="CustomerAccount") as caught:
        await world.applier.apply(world.fno_event("customers", {"dataAreaId": "usmf"}))
    assert not is_transient(caught.value) and category_of(caught.value) == "application"
    with pytest.raises(BadChange, match="record id"):
        await world.applier.apply(world.dv_event("customers", None))
    with pytest.raises(BadChange, match="CustomerAccount"):
        await world.applier.apply(world.fno_event("customers", {"dataAreaId": "usmf"}, "delete"))
    assert world.dv.writes() == [] and world.fo.writes() == []


async def test_a_late_dataverse_change_of_a_deleted_row_does_not_bring_the_record_back(world: World) -> None:
    # F&O deletes the customer; the webhook of an earlier Dataverse write to that account arrives after.
    row_id = await world.linked_customer()
    world.fo.tables["CustomersV3"].clear()
    await world.applier.apply(world.fno_event("customers", USMF_001, "delete"))
    late = world.dv_event("customers", row_id, "create", values={
        "accountid": row_id, "accountnumber": "US-001", "name": "late", "msdyn_company": world.company_ref()})
    result = await world.applier.apply(late)
    assert result.outcome == "skipped" and result.reason.startswith("stale"), result
    assert world.fo.row("CustomersV3", **USMF_001) is None
