"""F&O events -> what to tell Dataverse about virtual tables (core.virtual.events.pending_of): parsed by the real
F&O event parser with the shipped maps and definitions; the id is the one the OData service hands out."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.events.fno import parse_fno
from core.maps import MapSet
from core.virtual.catalog import load_folder
from core.virtual.events import pending_of
from core.virtual.keys import id_of
from core.virtual.model import VirtualTable

ROOT = Path(__file__).resolve().parents[3]
ENTITY = "mserp_custcustomergroupentity"


@pytest.fixture(scope="module")
def maps() -> MapSet:
    return MapSet.load([ROOT / "maps"])


@pytest.fixture(scope="module")
def tables() -> list[VirtualTable]:
    return load_folder(ROOT / "virtualtables")


def data_event(
    message: str, company: str, group: str, entity: str = ENTITY, key: str = "customergroupid"
) -> dict[str, Any]:
    attributes = [{"key": "mserp_dataareaid", "value": company}, {"key": f"mserp_{key}", "value": group}]
    target: dict[str, Any] = (
        {
            "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Id": str(uuid.uuid4()),
            "KeyAttributes": attributes,
            "LogicalName": entity,
        }
        if message == "Delete"
        else {
            "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Attributes": attributes,
            "LogicalName": entity,
        }
    )
    return {
        "MessageName": message,
        "PrimaryEntityName": entity,
        "OperationId": str(uuid.uuid4()).upper(),
        "OperationCreatedOn": "/Date(1733300000000+0000)/",
        "InputParameters": [{"key": "Target", "value": target}],
    }


def groups(tables: list[VirtualTable]) -> VirtualTable:
    return next(t for t in tables if t.entity_set == "FnoCustomerGroups")


@pytest.mark.parametrize(
    ("message", "action"),
    [("Create", "OnExternalCreated"), ("Update", "OnExternalUpdated"), ("Delete", "OnExternalDeleted")],
)
def test_each_data_event_names_its_action_and_the_services_id(
    maps: MapSet, tables: list[VirtualTable], message: str, action: str
) -> None:
    body = json.dumps([data_event(message, "usmf", "10")]).encode()
    [pending] = pending_of(body, parse_fno(body, maps).events, tables)
    assert (pending.entity_set, pending.action) == ("FnoCustomerGroups", action)
    assert pending.row_id == id_of(groups(tables), {"dataAreaId": "usmf", "CustomerGroupId": "10"})
    assert pending.key == {"dataAreaId": "usmf", "CustomerGroupId": "10"}


def test_other_entities_and_tables_without_fno_events_are_left_alone(maps: MapSet, tables: list[VirtualTable]) -> None:
    body = json.dumps(
        [data_event("Update", "usmf", "US-001", "mserp_custcustomerv3entity", "customeraccount")]
    ).encode()
    events = parse_fno(body, maps).events
    assert events and pending_of(body, events, tables) == []
    off = [t.model_copy(update={"notify": None}) for t in tables]
    group = json.dumps([data_event("Update", "usmf", "10")]).encode()
    assert pending_of(group, parse_fno(group, maps).events, off) == []


def test_a_redelivered_event_keeps_its_row_key(maps: MapSet, tables: list[VirtualTable]) -> None:
    body = json.dumps([data_event("Update", "usmf", "10")]).encode()
    first = pending_of(body, parse_fno(body, maps).events, tables)
    again = pending_of(body, parse_fno(body, maps).events, tables)
    assert [p.row_key for p in first] == [p.row_key for p in again]


def test_fno_events_need_an_fno_source() -> None:
    data = json.loads((ROOT / "virtualtables" / "products.json").read_text())
    data["notify"] = {"fno_events": True}
    with pytest.raises(ValueError, match="only an F&O source"):
        VirtualTable.model_validate(data)
    data["notify"] = {}
    with pytest.raises(ValueError, match="needs changed_column"):
        VirtualTable.model_validate(data)
