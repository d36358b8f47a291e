"""Map model additions for the party scenario: date-effective rows (a validity window and the primary flag it
governs, decided by an injected clock) and a lookup through part of a composite key."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from core.maps import KeyRef, MapSet, load_maps, project, validate_maps
from core.maps.model import Validity
from core.maps.scenarios import Scenario, ScenarioError, Scenarios
from core.maps.validity import boundary_filter, crossed, is_current, now, use_clock, window

PARTIES: dict[str, Any] = {
    "name": "t-parties", "version": "1.0.0", "primary": "fno",
    "fno": {"entity_set": "PartiesV2", "key": ["PartyNumber"]},
    "dataverse": {"table": "msdyn_party", "entity_set": "msdyn_parties", "primary_id": "msdyn_partyid",
                  "key": ["msdyn_partynumber"]},
    "fields": [{"fno": "PartyNumber", "dataverse": "msdyn_partynumber", "direction": "both", "type": "string"},
               {"fno": "Name", "dataverse": "msdyn_name", "direction": "both", "type": "string"}],
}
ADDRESSES: dict[str, Any] = {
    "name": "t-addresses", "version": "1.0.0", "primary": "fno",
    "fno": {"entity_set": "PartyLocationPostalAddressesV2", "key": ["PartyNumber", "LocationId"]},
    "dataverse": {"table": "msdyn_partypostaladdress", "entity_set": "msdyn_partypostaladdresses",
                  "primary_id": "msdyn_partypostaladdressid", "key": ["msdyn_partynumber", "msdyn_locationid"]},
    "fields": [
        {"fno": "PartyNumber", "dataverse": "msdyn_partynumber", "direction": "both", "type": "string"},
        {"fno": "LocationId", "dataverse": "msdyn_locationid", "direction": "both", "type": "string"},
        {"fno": "AddressStreet", "dataverse": "msdyn_street", "direction": "both", "type": "string"},
        {"fno": "IsPrimary", "dataverse": "msdyn_isprimary", "direction": "both", "type": "enum",
         "transform": [{"type": "noyes_bool"}]},
        {"fno": "ValidFrom", "dataverse": "msdyn_validfrom", "direction": "both", "type": "datetime"},
        {"fno": "ValidTo", "dataverse": "msdyn_validto", "direction": "both", "type": "datetime"},
    ],
    "lookups": [{"dataverse": "msdyn_partyid", "map": "t-parties", "fno": {"PartyNumber": "PartyNumber"},
                 "direction": "to_dataverse"}],
    "validity": {"valid_from": "ValidFrom", "valid_to": "ValidTo", "primary": "IsPrimary"},
}
DAY = datetime(2030, 1, 1, tzinfo=UTC)
BEFORE, AFTER = datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
CURRENT = {"PartyNumber": "P1", "LocationId": "P1-A1", "AddressStreet": "1 Pine Street", "IsPrimary": "Yes",
           "ValidFrom": datetime(2020, 1, 1, tzinfo=UTC), "ValidTo": DAY}
FUTURE = {"PartyNumber": "P1", "LocationId": "P1-A2", "AddressStreet": "2 Harbor Way", "IsPrimary": "Yes",
          "ValidFrom": DAY, "ValidTo": None}


def _load(tmp_path: Path, *docs: dict[str, Any]):
    paths = []
    for doc in docs:
        path = tmp_path / f"{doc['name']}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    result = load_maps(paths)
    return result, result.problems + validate_maps(result.maps)


@pytest.fixture
def maps(tmp_path):
    result, problems = _load(tmp_path, PARTIES, ADDRESSES)
    assert problems == []
    return {item.map.name: item.map for item in result.maps}


def _to_dataverse(maps, record, at):
    with use_clock(lambda: at):
        return project(maps["t-addresses"], "to_dataverse", record, maps=maps)


def test_future_dated_primary_address_becomes_primary_on_its_date(maps):
    assert _to_dataverse(maps, FUTURE, BEFORE)["msdyn_isprimary"] is False
    assert _to_dataverse(maps, FUTURE, DAY)["msdyn_isprimary"] is True
    assert _to_dataverse(maps, FUTURE, AFTER)["msdyn_isprimary"] is True
    # ... and the address it replaces stops being primary at the same instant.
    assert _to_dataverse(maps, CURRENT, BEFORE)["msdyn_isprimary"] is True
    assert _to_dataverse(maps, CURRENT, DAY)["msdyn_isprimary"] is False


def test_a_row_not_flagged_primary_is_never_made_primary(maps):
    record = {**FUTURE, "IsPrimary": "No"}
    assert _to_dataverse(maps, record, AFTER)["msdyn_isprimary"] is False


def test_a_partial_change_without_the_window_sends_the_flag_as_it_is(maps):
    assert _to_dataverse(maps, {"PartyNumber": "P1", "LocationId": "P1-A2", "IsPrimary": "Yes"},
                         BEFORE)["msdyn_isprimary"] is True


def test_dataverse_does_not_send_back_the_flag_of_a_row_not_valid_now(maps):
    record = {"msdyn_partynumber": "P1", "msdyn_locationid": "P1-A2", "msdyn_street": "3 Dock Road",
              "msdyn_isprimary": False, "msdyn_validfrom": DAY, "msdyn_validto": None}
    with use_clock(lambda: BEFORE):
        early = project(maps["t-addresses"], "to_fno", record, maps=maps)
    with use_clock(lambda: AFTER):
        late = project(maps["t-addresses"], "to_fno", record, maps=maps)
    assert "IsPrimary" not in early and early["AddressStreet"] == "3 Dock Road"
    assert late["IsPrimary"] == "No"


def test_the_party_lookup_goes_through_the_address_key(maps):
    out = _to_dataverse(maps, CURRENT, BEFORE)
    assert out["msdyn_partynumber"] == "P1"
    assert out["msdyn_partyid"] == KeyRef("t-parties", "dataverse", (("msdyn_partynumber", "P1"),))
    with use_clock(lambda: BEFORE):
        back = project(maps["t-addresses"], "to_fno", {"msdyn_partynumber": "P1", "msdyn_locationid": "P1-A1",
                                                        "msdyn_partyid": KeyRef("t-parties", "dataverse",
                                                                                (("msdyn_partynumber", "P9"),))},
                       maps=maps)
    assert back["PartyNumber"] == "P1"  # the key field writes F&O; the to_dataverse lookup does not


def test_window_edges_and_empty_dates():
    validity = Validity(**ADDRESSES["validity"])
    assert window(validity, {"ValidFrom": "2020-01-01T00:00:00Z", "ValidTo": "1900-01-01T00:00:00Z"}) == (
        datetime(2020, 1, 1, tzinfo=UTC), None)
    assert window(validity, {"ValidFrom": date(2030, 1, 1)}) == (DAY, None)
    assert is_current(validity, FUTURE, DAY) and not is_current(validity, FUTURE, BEFORE)
    assert not is_current(validity, CURRENT, DAY) and is_current(validity, CURRENT, BEFORE)
    assert crossed(validity, FUTURE, BEFORE, DAY) and not crossed(validity, FUTURE, DAY, AFTER)
    assert crossed(validity, CURRENT, BEFORE, AFTER)
    with pytest.raises(ValueError, match="no time zone"):
        window(validity, {"ValidFrom": datetime(2030, 1, 1)})


def test_boundary_filter_names_both_edges(maps):
    text = boundary_filter(maps["t-addresses"], BEFORE, AFTER)
    assert text == ("(ValidFrom gt 2029-12-31T23:59:59Z and ValidFrom le 2030-01-01T00:00:01Z) or "
                    "(ValidTo gt 2029-12-31T23:59:59Z and ValidTo le 2030-01-01T00:00:01Z)")
    with pytest.raises(ValueError, match="has no validity"):
        boundary_filter(maps["t-parties"], BEFORE, AFTER)


def test_the_default_clock_is_aware_utc():
    assert now().tzinfo is not None and abs((now() - datetime.now(UTC)).total_seconds()) < 5


def _broken(tmp_path, change) -> set[tuple[str | None, str | None, str]]:
    doc = copy.deepcopy(ADDRESSES)
    change(doc)
    _, problems = _load(tmp_path, PARTIES, doc)
    for problem in problems:
        assert str(problem).startswith(str(tmp_path / "t-addresses.json"))
    return {(p.map, p.field, p.message) for p in problems}


def test_validity_fields_must_be_mapped(tmp_path):
    def unmapped(doc):
        doc["validity"]["valid_to"] = "ExpirationDate"
    assert _broken(tmp_path, unmapped) == {
        ("t-addresses", "ExpirationDate",
         "unknown field: validity valid_to 'ExpirationDate' is not a mapped F&O field")}


def test_validity_window_must_be_dates(tmp_path):
    def wrong(doc):
        doc["validity"]["valid_from"] = "AddressStreet"
    assert _broken(tmp_path, wrong) == {
        ("t-addresses", "AddressStreet",
         "wrong type: validity valid_from must be a date or datetime field, not string")}


def test_validity_primary_must_arrive_as_a_boolean(tmp_path):
    def no_transform(doc):
        doc["fields"][3]["transform"] = []
        doc["dataverse"]["key"] = ["msdyn_partynumber", "msdyn_locationid"]
    problems = _broken(tmp_path, no_transform)
    assert ("t-addresses", "IsPrimary", "wrong type: validity primary must arrive in Dataverse as a boolean, not enum "
            "(NoYes fields take the noyes_bool transform)") in problems

    def one_way(doc):
        doc["fields"][3]["direction"] = "to_fno"
    assert ("t-addresses", "IsPrimary", "validity primary must be sent to a Dataverse column (direction both or "
            "to_dataverse)") in _broken(tmp_path, one_way)


def test_validity_from_and_to_differ(tmp_path):
    def same(doc):
        doc["validity"]["valid_to"] = "ValidFrom"
    assert ("t-addresses", "ValidFrom", "validity: valid_from and valid_to must be different fields") in _broken(
        tmp_path, same)


def test_a_key_field_feeds_a_lookup_only_to_dataverse(tmp_path):
    def both_ways(doc):
        doc["lookups"][0]["direction"] = "both"
    assert _broken(tmp_path, both_ways) == {
        ("t-addresses", "PartyNumber", "is both a field mapping and part of lookup 'msdyn_partyid' (only a key field "
         "may be both, with the lookup \"direction\": \"to_dataverse\")")}

    def not_key(doc):
        doc["lookups"][0]["fno"] = {"AddressStreet": "PartyNumber"}
    assert {p[1] for p in _broken(tmp_path, not_key)} == {"AddressStreet"}


def test_validity_is_in_the_structure_check(tmp_path):
    def typo(doc):
        doc["validity"]["valid_form"] = "ValidFrom"
    doc = copy.deepcopy(ADDRESSES)
    typo(doc)
    result, _ = _load(tmp_path, PARTIES, doc)
    assert any(p.map == "t-addresses" and "valid_form" in p.message for p in result.problems), result.problems


# A role map (customers, contacts, vendors) links its party through a lookup active only while the parties map is
# enabled: the role map ships enabled, the party scenario does not.
ROLE: dict[str, Any] = {
    "name": "t-roles", "version": "1.0.0", "primary": "fno",
    "fno": {"entity_set": "CustomersV3", "key": ["CustomerAccount"]},
    "dataverse": {"table": "account", "entity_set": "accounts", "primary_id": "accountid", "key": ["accountnumber"]},
    "fields": [{"fno": "CustomerAccount", "dataverse": "accountnumber", "direction": "both", "type": "string"}],
    "lookups": [{"dataverse": "msdyn_partyid", "map": "t-parties", "fno": {"PartyNumber": "PartyNumber"},
                 "direction": "both", "required": False, "when_target_enabled": True}],
}


def _running(tmp_path: Path, parties_enabled: bool) -> MapSet:
    result, problems = _load(tmp_path, {**PARTIES, "enabled": parties_enabled}, ROLE)
    assert problems == []
    return MapSet.checked(result)


def test_a_lookup_into_a_disabled_map_is_left_out_while_it_runs(tmp_path):
    running = _running(tmp_path, parties_enabled=False)
    assert running["t-roles"].lookups == []
    assert running.plan().order == ("t-parties", "t-roles") and running.plan().deferred == ()
    projected = running.project("t-roles", "to_dataverse", {"CustomerAccount": "C1", "PartyNumber": "P1"})
    assert projected == {"accountnumber": "C1"}  # no party reference to wait for
    # The definition stays as written (what the API shows and stores).
    assert [lk.dataverse for lk in running.loaded("t-roles").map.lookups] == ["msdyn_partyid"]


def test_the_lookup_is_active_once_its_target_map_is_enabled(tmp_path):
    running = _running(tmp_path, parties_enabled=True)
    assert [lk.dataverse for lk in running["t-roles"].lookups] == ["msdyn_partyid"]
    projected = running.project("t-roles", "to_dataverse", {"CustomerAccount": "C1", "PartyNumber": "P1"})
    assert projected["msdyn_partyid"] == KeyRef("t-parties", "dataverse", (("msdyn_partynumber", "P1"),))
    back = running.project("t-roles", "to_fno", {"accountnumber": "C1", "msdyn_partyid": projected["msdyn_partyid"]})
    assert back == {"CustomerAccount": "C1", "PartyNumber": "P1"}


def test_a_lookup_active_only_with_its_target_cannot_be_required(tmp_path):
    doc = copy.deepcopy(ROLE)
    doc["lookups"][0]["required"] = True
    _, problems = _load(tmp_path, PARTIES, doc)
    assert {(p.map, p.field, p.message) for p in problems} == {
        ("t-roles", "msdyn_partyid", "a lookup active only while its target map is enabled cannot be required "
                                     "(set \"required\": false)")}


def test_a_scenario_without_the_target_of_a_conditional_lookup_is_valid(tmp_path):
    result, _ = _load(tmp_path, PARTIES, ROLE)
    maps = {item.map.name: item.map for item in result.maps}
    scenarios = Scenarios([Scenario(name="roles", title="Roles", maps=["t-roles"])], maps)
    assert scenarios.expand("roles") == ["t-roles"]
    plain = copy.deepcopy(ROLE)
    del plain["lookups"][0]["when_target_enabled"]
    result, _ = _load(tmp_path, PARTIES, plain)
    with pytest.raises(ScenarioError, match="needs map 't-parties'"):
        Scenarios([Scenario(name="roles", title="Roles", maps=["t-roles"])], {i.map.name: i.map for i in result.maps})
