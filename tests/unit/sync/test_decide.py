"""The sync rule (core.sync.decide) on plain values: the shipped maps, a change event, a record, a link.
No fakes and no awaits: what the applier reads is given, what it would do is the outcome."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.events.model import ChangeEvent
from core.maps import MapSet, TableMap, project
from core.sync.compare import canon_all, side_values
from core.sync.decide import (
    Decision,
    Delete,
    Refuse,
    Remember,
    Skip,
    Write,
    WriteBack,
    check_latest,
    check_primary,
    decide,
)
from core.sync.domain import Link
from core.sync.errors import BadChange
from tests.unit.sync.world import MAPS, T0, customer, vendor

ROW = "4f1d3c6e-0000-0000-0000-0000000000aa"
KEY = ("USMF", "US-001")
FNO_KEY = {"dataAreaId": "usmf", "CustomerAccount": "US-001"}

maps = MapSet.load([MAPS])
customers = maps["customers"]
vendors = maps["vendors"]


def fno_change(table_map: TableMap = customers, operation: str = "update", *, at: Any = T0,
               keys: dict[str, Any] | None = None) -> ChangeEvent:
    return ChangeEvent(event_id="fo-1", map=table_map.name, source="fno", entity=table_map.fno.entity_set,
                       operation=operation, keys=FNO_KEY if keys is None else keys, occurred_at=at)


def dv_change(table_map: TableMap = customers, operation: str = "update", *, at: Any = T0,
              version: str | None = None) -> ChangeEvent:
    return ChangeEvent(event_id="dv-1", map=table_map.name, source="dataverse", entity=table_map.dataverse.table,
                       operation=operation, record_id=ROW, version=version, occurred_at=at)


def account(fno_record: dict[str, Any], table_map: TableMap = customers) -> dict[str, Any]:
    """The Dataverse row of an F&O record, as the applier reads it (lookups as key references)."""
    return project(table_map, "to_dataverse", fno_record, maps=maps)


def synced(fno_record: dict[str, Any], table_map: TableMap = customers, **kw: Any) -> Link:
    """The link of a record the engine synced from F&O at T0."""
    return Link(map=table_map.name, key=KEY, dataverse_id=ROW, fno_key=FNO_KEY,
                values={"fno": side_values(table_map, "fno", fno_record),
                        "dataverse": canon_all(account(fno_record, table_map))},
                versions={"fno_at": T0.isoformat()}, **kw)


def run(event: ChangeEvent, record: dict[str, Any] | None, link: Link | None, *, ours: bool = False,
        table_map: TableMap = customers) -> Decision:
    return decide(table_map, event, record, link, ours=ours, maps=maps)


# -- nothing to write ----------------------------------------------------------------------------------
def test_fno_change_holding_what_was_synced_is_an_echo_remembered() -> None:
    outcome = run(fno_change(), customer(), synced(customer()))
    assert isinstance(outcome, Remember) and outcome.echo
    assert outcome.reason == "echo: no mapped column changed since the engine last synced this record"
    assert outcome.key == "USMF|US-001"


def test_change_the_target_already_holds_is_a_no_op_not_an_echo() -> None:
    link = synced(customer())
    link.values["dataverse"]["name"] = "Contoso Wholesale"  # Dataverse got the new name another way
    outcome = run(fno_change(), customer(OrganizationName="Contoso Wholesale"), link)
    assert isinstance(outcome, Remember) and not outcome.echo
    assert outcome.reason == "no-op: Dataverse already holds these values"
    assert outcome.source_values["OrganizationName"] == "Contoso Wholesale"


def test_record_outside_the_map_filter_is_skipped_under_its_key() -> None:
    outcome = run(fno_change(), customer(PartyType="Person"), None)
    assert outcome == Skip("filtered out by the F&O filter of the map", "USMF|US-001")


def test_record_gone_before_the_read_is_skipped() -> None:
    outcome = run(fno_change(), None, None)
    assert outcome == Skip("the record no longer exists in F&O (a delete follows)", "USMF|US-001")


def test_older_dataverse_rowversion_is_stale() -> None:
    link = synced(customer())
    link.versions["dataverse"] = "300"
    outcome = run(dv_change(version="250"), account(customer(OrganizationName="Older")), link)
    assert outcome == Skip("stale: version 250 is older than the applied 300", "USMF|US-001")


def test_engine_write_overtaken_by_a_later_one_is_stale() -> None:
    link = synced(customer(OrganizationName="Contoso Two"))
    # The webhook of the engine's earlier write, which set "Contoso One".
    outcome = run(dv_change(), account(customer(OrganizationName="Contoso One")), link, ours=True)
    assert outcome == Skip("stale: an earlier write of the engine's own, since overtaken", "USMF|US-001")


def test_engine_write_holding_what_it_wrote_is_an_echo_even_where_sides_differ() -> None:
    link = synced(customer())
    link.values["fno"]["SalesMemo"] = "one-way: only Dataverse sends it"
    row = {**account(customer()), "description": "from Dataverse"}
    outcome = run(dv_change(), row, link, ours=True)
    assert isinstance(outcome, Remember) and outcome.echo
    assert outcome.reason == "echo: the engine's own write came back"


def test_a_re_read_of_a_row_the_engine_wrote_last_sends_only_what_moved_since() -> None:
    """A sweep found the row, last written by the engine (another column, from Dataverse) after a user's rename whose
    event never came: the rename goes across, the engine's own values and the one-way columns do not."""
    link = synced(customer())
    link.values["fno"]["PrimaryContactPhone"] = "+1 555 0199"  # the engine wrote Dataverse's phone into F&O
    link.values["dataverse"]["telephone1"] = "+1 555 0199"
    link.values["dataverse"]["description"] = "only Dataverse has it"  # a to_fno column, never sent this way
    now = customer(OrganizationName="Renamed while down", PrimaryContactPhone="+1 555 0199")
    refetch = fno_change(operation="refetch")
    outcome = run(refetch, now, link, ours=True)
    assert isinstance(outcome, Write) and outcome.changes == {"name": "Renamed while down"}
    assert isinstance(run(refetch, customer(PrimaryContactPhone="+1 555 0199"), link, ours=True), Remember)
    # Dataverse's row, made by the engine from F&O: its one-way columns (description -> SalesMemo, LanguageId's
    # constant) differ from F&O's, but nobody changed them, so nothing goes back
    link = synced(customer(SalesMemo="F&O memo", LanguageId="de"))
    row = account(customer(SalesMemo="F&O memo", LanguageId="de"))
    assert isinstance(run(dv_change(), {**row, "description": None}, link), Write)  # a user's save would send them
    outcome = run(dv_change(operation="refetch"), {**row, "description": None}, link, ours=True)
    assert isinstance(outcome, Remember) and outcome.echo
    assert outcome.reason == "echo: the engine wrote this record last, and no mapped column moved since"
    # a live event of the engine's own write that disagrees is still a stale echo (the user's own event comes)
    assert isinstance(run(fno_change(), now, link, ours=True), Skip)


def test_change_of_a_row_whose_delete_was_synced_is_stale() -> None:
    tombstone = Link(map="customers", key=KEY, dataverse_id=ROW, state="deleted")
    outcome = run(dv_change(operation="create"), account(customer()), tombstone)
    assert outcome == Skip("stale: this Dataverse row was deleted after the change", "USMF|US-001")


# -- writes --------------------------------------------------------------------------------------------
def test_change_of_a_linked_record_writes_only_what_changed() -> None:
    outcome = run(fno_change(), customer(AddressCity="Tacoma"), synced(customer()))
    assert isinstance(outcome, Write)
    assert (outcome.key, outcome.target, outcome.update) == (KEY, "dataverse", True)
    assert outcome.changes == {"address1_city": "Tacoma"}
    assert outcome.projected["name"] == "Contoso Retail"  # the whole record, should the row be gone
    assert not outcome.check_primary  # latest wins: decided without reading Dataverse
    assert outcome.reason(created=False) == "updated address1_city"
    assert outcome.reason(created=True).startswith("created again: the linked Dataverse record had been deleted")


def test_record_without_a_link_is_created_whole() -> None:
    outcome = run(fno_change(), customer(), None)
    assert isinstance(outcome, Write) and not outcome.update
    assert outcome.changes == outcome.projected and outcome.projected["customertypecode"] == 3
    assert outcome.reason(created=True) == "created"
    assert outcome.key_text == "USMF|US-001"


def test_latest_wins_writes_the_later_version_back_over_an_older_change() -> None:
    before = T0 - timedelta(minutes=5)
    outcome = run(dv_change(at=before), account(customer(OrganizationName="Made before T0")), synced(customer()))
    assert isinstance(outcome, WriteBack) and (outcome.loser, outcome.winner) == ("dataverse", "fno")
    assert outcome.reason == (f"conflict, latest wins: F&O changed this record at {T0.isoformat()}, after this "
                              f"change ({before.isoformat()})")
    assert outcome.key_text == "USMF|US-001" and outcome.source_values["name"] == "Made before T0"


def test_latest_wins_writes_a_change_newer_than_the_other_sides() -> None:
    later = T0 + timedelta(minutes=5)
    outcome = run(dv_change(at=later), account(customer(OrganizationName="Made after T0")), synced(customer()))
    assert isinstance(outcome, Write) and outcome.changes == {"OrganizationName": "Made after T0"}


def test_latest_wins_by_column_contests_only_what_the_other_side_changed_later() -> None:
    link = synced(customer())
    link.versions.update({"fno_at": (T0 + timedelta(minutes=5)).isoformat(),
                          "fno_at:PrimaryContactPhone": (T0 + timedelta(minutes=5)).isoformat(),
                          "fno_at:OrganizationName": T0.isoformat()})
    renamed = account(customer(OrganizationName="Renamed at T0+1"))
    outcome = run(dv_change(at=T0 + timedelta(minutes=1)), renamed, link)
    assert isinstance(outcome, Write) and outcome.changes == {"OrganizationName": "Renamed at T0+1"}
    both = account(customer(OrganizationName="Renamed at T0+1", PrimaryContactPhone="+1 555 0111"))
    outcome = run(dv_change(at=T0 + timedelta(minutes=1)), both, link)
    assert isinstance(outcome, WriteBack) and outcome.contested == {"PrimaryContactPhone"}
    assert outcome.forward == {"OrganizationName": "Renamed at T0+1"}
    assert outcome.reason.startswith("conflict, latest wins: F&O changed PrimaryContactPhone at ")


def test_primary_wins_asks_for_the_primary_side_and_refuses_what_it_moved() -> None:
    link = synced(vendor(), vendors)
    row = account(vendor(VendorOrganizationName="Dataverse name"), vendors)
    outcome = run(dv_change(vendors), row, link, table_map=vendors)
    assert isinstance(outcome, Write) and outcome.check_primary
    moved = vendor(VendorOrganizationName="F&O name")
    refusal = check_primary(vendors, dv_change(vendors), link, outcome, moved)
    assert isinstance(refusal, Refuse)
    assert refusal.reason.startswith("map 'vendors': F&O (the primary side) changed VendorOrganizationName since "
                                     "the last sync; primary wins")
    assert check_primary(vendors, dv_change(vendors), link, outcome, vendor()) is None  # F&O left it alone
    assert check_primary(vendors, dv_change(vendors), link, outcome, None) is None


def test_latest_wins_reads_the_target_and_a_later_change_there_not_synced_yet_wins() -> None:
    # Dataverse renamed at T0+1; F&O renamed at T0+2 too, but its event has not been applied: the link knows nothing.
    link = synced(customer())
    event = dv_change(at=T0 + timedelta(minutes=1))
    outcome = run(event, account(customer(OrganizationName="DV name", PrimaryContactPhone="+1 555 0199")), link)
    assert isinstance(outcome, Write) and outcome.check_latest
    there = customer(OrganizationName="F&O name")
    verdict = check_latest(customers, event, link, outcome, there, T0 + timedelta(minutes=2))
    assert isinstance(verdict, WriteBack) and (verdict.loser, verdict.winner) == ("dataverse", "fno")
    assert verdict.contested == {"OrganizationName"}
    assert verdict.forward == {"PrimaryContactPhone": "+1 555 0199"}  # F&O left the phone alone: it goes across
    assert verdict.reason.startswith("conflict, latest wins: F&O changed OrganizationName at 2026-01-05T09:02:00")
    # the same second counts as later (both services keep whole seconds), and so does an unknown time
    same_second = dv_change(at=T0 + timedelta(minutes=2, milliseconds=400))
    assert isinstance(check_latest(customers, same_second, link, outcome, there, T0 + timedelta(minutes=2)), WriteBack)
    assert isinstance(check_latest(customers, event, link, outcome, there, None), WriteBack)


def test_latest_wins_overwrites_an_earlier_change_not_synced_yet_and_says_so() -> None:
    link = synced(customer())
    event = dv_change(at=T0 + timedelta(minutes=3))
    outcome = run(event, account(customer(OrganizationName="DV name")), link)
    assert isinstance(outcome, Write)
    verdict = check_latest(
        customers, event, link, outcome, customer(OrganizationName="F&O name"), T0 + timedelta(minutes=2)
    )
    assert verdict == (
        "conflict, latest wins: this change (2026-01-05T09:03:00+00:00) overwrote F&O's earlier "
        "change of OrganizationName at 2026-01-05T09:02:00+00:00 (not synced yet)"
    )


def test_latest_wins_finds_nothing_contested_when_the_target_holds_what_was_synced_or_what_is_sent() -> None:
    link = synced(customer())
    event = dv_change(at=T0 + timedelta(minutes=1))
    outcome = run(event, account(customer(OrganizationName="DV name")), link)
    assert isinstance(outcome, Write)
    later = T0 + timedelta(minutes=5)
    assert check_latest(customers, event, link, outcome, customer(), later) is None  # as synced
    assert check_latest(customers, event, link, outcome, customer(OrganizationName="DV name"), later) is None
    # a column the change does not write is no conflict, whenever F&O changed it
    assert check_latest(customers, event, link, outcome, customer(AddressCity="Tacoma"), later) is None
    assert check_latest(customers, event, link, outcome, None, later) is None  # gone: the write finds out


def test_primary_wins_does_not_ask_for_the_latest_check() -> None:
    outcome = run(
        dv_change(vendors),
        account(vendor(VendorOrganizationName="x"), vendors),
        synced(vendor(), vendors),
        table_map=vendors,
    )
    assert isinstance(outcome, Write) and not outcome.check_latest


# -- deletes -------------------------------------------------------------------------------------------
def test_delete_of_a_linked_record_deletes_on_the_other_side() -> None:
    outcome = run(dv_change(operation="delete"), None, synced(customer()))
    assert outcome == Delete(KEY, "fno")
    assert (outcome.reason(gone=True), outcome.reason(gone=False)) == ("deleted", "already absent in F&O")


def test_delete_of_a_tombstoned_record_is_its_echo() -> None:
    tombstone = Link(map="customers", key=KEY, fno_key=FNO_KEY, state="deleted")
    outcome = run(fno_change(operation="delete"), FNO_KEY, tombstone)
    assert outcome == Skip("echo: the delete was already propagated", "USMF|US-001")


def test_dataverse_delete_without_link_or_key_is_skipped_and_fno_delete_without_key_is_bad() -> None:
    outcome = run(dv_change(operation="delete"), {}, None)
    assert outcome == Skip("delete of a row never synced, and its pre image lacks the integration key",
                           f"dataverse:{ROW}")
    with pytest.raises(BadChange, match="CustomerAccount"):
        run(fno_change(operation="delete", keys={"dataAreaId": "usmf"}), {"dataAreaId": "usmf"}, None)


# -- the link's transitions ----------------------------------------------------------------------------
def test_an_echo_remembered_does_not_move_the_sides_change_time_and_a_tombstone_keeps_the_row_id() -> None:
    link = synced(customer())
    later = T0 + timedelta(minutes=3)
    echo = dv_change(at=later, version="500")
    assert link.remembered(echo, side_values(customers, "dataverse", account(customer())), echo=True)
    assert link.versions == {"fno_at": T0.isoformat(), "dataverse": "500"}  # no dataverse_at: not a change
    assert not link.remembered(echo, link.values["dataverse"], echo=True)  # nothing new: no save needed
    link.tombstoned(dv_change(operation="delete", at=later))
    assert (link.state, link.values, link.dataverse_id) == ("deleted", {}, ROW)
    assert link.versions["dataverse_at"] == later.isoformat()
