"""F&O business events and data events -> change events, on payloads captured from the F&O simulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.events.errors import PayloadError
from core.events.fno import parse_fno
from core.maps import MapSet

PAYLOADS = Path(__file__).parent / "payloads"
ROOT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def maps() -> MapSet:
    return MapSet.load([ROOT / "maps"])


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def raw(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


def error_of(body: bytes, maps: MapSet) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_fno(body, maps)
    return caught.value


# -- business events --------------------------------------------------------------------------------------


def test_business_event_names_the_record_by_key(maps: MapSet) -> None:
    parsed = parse_fno(raw("fno_business_create"), maps)
    assert parsed.test_message is False and parsed.skipped == []
    [event] = parsed.events
    assert event.source == "fno" and event.entity == "CustomersV3" and event.operation == "refetch"
    assert event.keys == {"CustomerAccount": "US-900", "dataAreaId": "usmf"}
    assert event.company == "USMF" and event.values == {} and event.partial is True
    assert event.version == "5637144577"
    assert event.event_id == "fno:F2DF4D32-A400-4622-8ADC-B647A0729E63"
    assert event.initiated_by == "5a1c0c56-8f4b-4c3a-9e07-3b1d2a4c6e01"
    assert event.occurred_at == datetime(2026, 11, 21, 9, 52, 1, 898000, tzinfo=UTC)


def test_business_event_delete_and_change_type_rules(maps: MapSet) -> None:
    [delete] = parse_fno(raw("fno_business_delete"), maps).events
    assert delete.operation == "delete"
    data = payload("fno_business_create")
    del data["ChangeType"]
    assert parse_fno(dumps(data), maps).events[0].operation == "refetch"
    data["ChangeType"] = "Merge"
    assert error_of(dumps(data), maps).field == "ChangeType"


def test_business_event_legal_entity_falls_back_to_the_envelope(maps: MapSet) -> None:
    data = payload("fno_business_create")
    del data["LegalEntity"]
    assert parse_fno(dumps(data), maps).events[0].keys["dataAreaId"] == "usmf"
    del data["BusinessEventLegalEntity"]
    assert error_of(dumps(data), maps).field == "LegalEntity"


def test_business_event_missing_key_field(maps: MapSet) -> None:
    data = payload("fno_business_create")
    del data["CustomerAccount"]
    assert error_of(dumps(data), maps).field == "CustomerAccount"


def test_business_event_iso_time_when_no_ms_date(maps: MapSet) -> None:
    data = payload("fno_business_create")
    del data["EventTime"]
    assert parse_fno(dumps(data), maps).events[0].occurred_at == datetime(2026, 11, 21, 9, 52, 1, 898803, tzinfo=UTC)


def test_activation_test_message_is_accepted_without_events(maps: MapSet) -> None:
    parsed = parse_fno(raw("fno_test_message"), maps)
    assert parsed.test_message is True and parsed.events == [] and parsed.skipped == []


def test_unknown_business_event_is_skipped(maps: MapSet) -> None:
    data = payload("fno_business_create")
    data["BusinessEventId"] = "SalesInvoicePostedBusinessEvent"
    parsed = parse_fno(dumps(data), maps)
    assert parsed.events == []
    assert [s.entity for s in parsed.skipped] == ["SalesInvoicePostedBusinessEvent"]


# -- data events --------------------------------------------------------------------------------------------


def test_data_event_create_carries_keys_only(maps: MapSet) -> None:
    [event] = parse_fno(raw("fno_data_create"), maps).events
    assert event.entity == "CustomersV3" and event.operation == "refetch"
    assert event.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-900"}
    assert event.values == {} and event.partial is True and event.company == "USMF"
    source = payload("fno_data_create")
    assert event.event_id == "fno:" + source["OperationId"]
    assert event.record_id == source["PrimaryEntityId"]
    assert event.version is not None and event.version.endswith("Z")  # ModifiedDateTime: no ControlNumber
    assert event.initiated_by == "5a1c0c56-8f4b-4c3a-9e07-3b1d2a4c6e01"


def test_data_event_update_and_delete(maps: MapSet) -> None:
    [update] = parse_fno(raw("fno_data_update"), maps).events
    assert update.operation == "refetch" and update.keys["CustomerAccount"] == "US-900"
    [delete] = parse_fno(raw("fno_data_delete"), maps).events
    assert delete.operation == "delete" and delete.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-900"}


def test_data_event_delete_keys_from_pre_image_alone(maps: MapSet) -> None:
    data = payload("fno_data_delete")
    data["InputParameters"][0]["value"]["KeyAttributes"] = []
    [delete] = parse_fno(dumps(data), maps).events
    assert delete.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-900"}


def test_data_event_control_number_wins_as_version(maps: MapSet) -> None:
    data = payload("fno_data_update")
    data["ControlNumber"] = 42
    assert parse_fno(dumps(data), maps).events[0].version == "42"


def test_unknown_data_event_entity_is_skipped(maps: MapSet) -> None:
    data = payload("fno_data_create")
    data["PrimaryEntityName"] = "mserp_somethingelse"
    parsed = parse_fno(dumps(data), maps)
    assert parsed.events == [] and parsed.skipped[0].entity == "mserp_somethingelse"


def test_array_of_events_and_paths_inside_it(maps: MapSet) -> None:
    items = [payload("fno_business_create"), payload("fno_data_update"), payload("fno_test_message")]
    parsed = parse_fno(dumps(items), maps)
    assert len(parsed.events) == 2 and parsed.test_message is True
    items[1]["MessageName"] = "Upsert"
    assert error_of(dumps(items), maps).field == "[1].MessageName"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("MessageName"), "MessageName"),
        (lambda d: d.update(MessageName="Assign"), "MessageName"),
        (lambda d: d.update(InputParameters="x"), "InputParameters"),
        (lambda d: d.update(InputParameters=[]), "InputParameters"),
        (lambda d: d["InputParameters"][0]["value"].update(Attributes={"a": 1}), "InputParameters[0].value.Attributes"),
        (lambda d: d.update(OperationId=None), "OperationId"),
        (lambda d: d.update(PrimaryEntityName=None), "PrimaryEntityName"),
    ],
)
def test_bad_data_events_name_the_field(maps: MapSet, change: Any, field: str) -> None:
    data = payload("fno_data_create")
    change(data)
    assert error_of(dumps(data), maps).field == field


def test_data_event_without_its_key_field(maps: MapSet) -> None:
    data = payload("fno_data_create")
    attrs = data["InputParameters"][0]["value"]["Attributes"]
    data["InputParameters"][0]["value"]["Attributes"] = [a for a in attrs if a["key"] != "mserp_customeraccount"]
    error = error_of(dumps(data), maps)
    assert error.field == "InputParameters[0].value" and "mserp_customeraccount" in error.message


@pytest.mark.parametrize(("body", "field"), [(b"", "body"), (b"nope", "body"), (b"42", "$"), (b"[1]", "[0]"),
                                             (b"{}", "MessageName")])
def test_wrong_shapes(maps: MapSet, body: bytes, field: str) -> None:
    assert error_of(body, maps).field == field


def test_business_event_control_number_must_be_an_integer(maps: MapSet) -> None:
    data = payload("fno_business_create")
    data["ControlNumber"] = "5"
    assert error_of(dumps(data), maps).field == "ControlNumber"
