"""F&O event payloads into change events: business events and data events.

Reference: shared/reference/protocols.md §3.2 (business event envelope) and §3.3 (data events, a
RemoteExecutionContext on the entity's virtual table). Pure: no I/O. Neither form carries values
the engine can use as they are (business events name only the record; data events give enums as
integers the engine cannot turn into symbols without metadata), so every event carries the record's
key only and apply re-reads the record.

Several maps may read one F&O entity (different filters or columns, another Dataverse table): an event
becomes one change event per map it concerns, each read with that map's own field names and key and
addressed to that map (`ChangeEvent.map`), so routing sends it to that map alone. The copies share the
source event's id; the queue message id is `<event id>|<map>` (core.sync.ingest.message_id): distinct per
map, the same on a redelivery.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.events.dataverse import (
    change_event,
    context_time,
    entity_attributes,
    guid,
    images,
    key_values,
    kind_of,
    load_json,
    optional_string,
    printable,
    required_string,
    type_name,
    wcf_date,
)
from core.events.errors import PayloadError
from core.events.model import ChangeEvent, Operation, Skipped
from core.maps import MapSet, TableMap

CHANGE_TYPES: dict[str, Operation] = {"Create": "refetch", "Update": "refetch", "Delete": "delete"}
DATA_MESSAGES: dict[str, Operation] = {"Create": "refetch", "Update": "refetch", "Delete": "delete"}
ATTRIBUTE_PREFIX = "mserp_"
_FRACTION = re.compile(r"\.\d+")
# The payload field behind each field of the change event, for a ValidationError of the model.
BUSINESS_FIELDS = {"event_id": "EventId", "occurred_at": "EventTime", "version": "ControlNumber",
                   "initiated_by": "InitiatingUserAADObjectId", "company": "LegalEntity"}
DATA_FIELDS = {"event_id": "OperationId", "entity": "PrimaryEntityName", "record_id": "PrimaryEntityId",
               "occurred_at": "OperationCreatedOn", "initiated_by": "InitiatingUserId",
               "correlation_id": "CorrelationId", "keys": "InputParameters", "version": "ControlNumber"}


@dataclass(frozen=True)
class FnoParse:
    events: list[ChangeEvent] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    test_message: bool = False


def parse_fno(body: bytes, maps: MapSet) -> FnoParse:
    """One F&O delivery (an object or an array of them) as change events; PayloadError on bad shapes."""
    payload = load_json(body)
    items = payload if isinstance(payload, list) else [payload]
    prefix_paths = isinstance(payload, list)
    events: list[ChangeEvent] = []
    skipped: list[Skipped] = []
    test_message = False
    for index, item in enumerate(items):
        path = f"[{index}]." if prefix_paths else ""
        if not isinstance(item, dict):
            raise PayloadError(path.rstrip(".") or "$", f"expected an event object, found {kind_of(item)}")
        try:
            if "BusinessEventId" in item:
                result = _business_event(item, maps)
            elif "MessageName" in item:
                result = _data_event(item, maps)
            else:
                raise PayloadError("MessageName", "missing: neither a business event (BusinessEventId) "
                                   "nor a data event (MessageName)")
        except PayloadError as error:
            raise PayloadError(path + error.field, error.message) from None
        if result is None:
            test_message = True
            continue
        for part in result:
            if isinstance(part, Skipped):
                skipped.append(part)
            else:
                events.append(part)
    return FnoParse(events, skipped, test_message)


def _concerned(table_maps: list[TableMap]) -> list[TableMap]:
    """The maps an event is read for: those that take it (enabled, syncing to Dataverse), so a disabled sibling
    neither refuses nor skips it; when none does, all of them (routing then records why none took it, and the
    virtual tables' notifications still see the event)."""
    return [m for m in table_maps if m.enabled and m.sends_to("dataverse")] or table_maps


def _per_map(table_maps: list[TableMap], entity: str, event_id: str,
             read: Callable[[TableMap], ChangeEvent]) -> list[ChangeEvent | Skipped]:
    """`read` of every map concerned, each addressed to its map. A map the event cannot serve (its key is not
    in the event) is refused for that map alone, as a Skipped naming the map and the field, recorded with the
    ingest's skips: the maps that can read the event must not lose it (nor F&O redeliver it forever) because
    of another map. When no map can read it, the event is refused as a whole (PayloadError), as it was with
    one map: the delivery is answered 400 / lands in the error log, where it can be resubmitted once fixed."""
    results: list[ChangeEvent | Skipped] = []
    refused: list[tuple[TableMap, PayloadError]] = []
    for table_map in table_maps:
        try:
            results.append(read(table_map).model_copy(update={"map": table_map.name}))
        except PayloadError as error:
            refused.append((table_map, error))
    if refused and not results:
        if len({(e.field, e.message) for _, e in refused}) == 1:  # one map, or a fault of the event itself
            raise refused[0][1]
        raise PayloadError(refused[0][1].field, "; ".join(f"map {m.name!r}: {e.message}" for m, e in refused))
    results += [Skipped(entity=entity, event_id=event_id,
                        reason=f"map {m.name!r} cannot read this event ({e.field}: {e.message}); "
                        "the other maps of the entity took it") for m, e in refused]
    return results


# -- business events ------------------------------------------------------------------------------------------


def _business_event(item: Mapping[str, Any], maps: MapSet) -> list[ChangeEvent | Skipped] | None:
    """One event per map listing the business event (Skipped when none does, or for a map whose key the
    event lacks: `_per_map`), None for the activation test message."""
    event_name = required_string(item, "BusinessEventId")
    control = item.get("ControlNumber")
    if isinstance(control, bool) or not isinstance(control, int):
        raise PayloadError("ControlNumber", f"expected an integer, found {kind_of(control)}")
    if control == 0:  # F&O sends this on activation to check the endpoint
        return None
    table_maps = _concerned([m for m in maps.values() if event_name in m.fno.business_events])
    if not table_maps:
        return [Skipped(entity=event_name, reason=f"no map lists business event {event_name}",
                        event_id=_source_id(item, "EventId"))]
    change = item.get("ChangeType", "Update")
    if not isinstance(change, str) or change not in CHANGE_TYPES:
        shown = printable(change) if isinstance(change, str) else kind_of(change)
        raise PayloadError("ChangeType", f"{shown!r} is not one of Create, Update, Delete")
    event_id = "fno:" + required_string(item, "EventId")
    when = _event_time(item)
    user = optional_string(item, "InitiatingUserAADObjectId")
    initiated_by = guid(user, "InitiatingUserAADObjectId") if user else None
    return _per_map(table_maps, event_name, event_id, lambda table_map: _business_change(
        item, table_map, event_id=event_id, operation=CHANGE_TYPES[change], version=str(control), occurred_at=when,
        initiated_by=initiated_by))


def _business_change(item: Mapping[str, Any], table_map: TableMap, **common: Any) -> ChangeEvent:
    """The business event as a change of `table_map`'s entity: keys by its F&O names, the company if it has one."""
    keys: dict[str, Any] = {}
    for name in table_map.key_fields("fno"):
        value = item.get(name)
        if value is None or value == "" or isinstance(value, dict | list):
            raise PayloadError(name, f"key field of map {table_map.name!r} missing or not a plain value")
        keys[name] = value
    company = None
    if table_map.company is not None:
        legal = item.get("LegalEntity") or item.get("BusinessEventLegalEntity")
        if not isinstance(legal, str) or not legal:
            raise PayloadError("LegalEntity", "missing: the map is company-specific")
        keys[table_map.company.fno] = legal.lower()
        company = legal.upper()
    return change_event(BUSINESS_FIELDS, source="fno", entity=table_map.fno.entity_set, company=company, keys=keys,
                        partial=True, **common)


def _source_id(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    return f"fno:{value}" if isinstance(value, str) and value else ""


def _event_time(item: Mapping[str, Any]) -> datetime:
    value = item.get("EventTime")
    when = wcf_date(value, "EventTime") if isinstance(value, str) else None
    if when is not None:
        return when
    iso = item.get("EventTimeIso8601")
    if isinstance(iso, str):
        # F&O writes 7 fractional digits; Python reads at most 6.
        text = _FRACTION.sub(lambda m: m.group(0)[:7], iso.replace("Z", "+00:00"))
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            try:
                return parsed.astimezone(UTC)
            except OverflowError:  # year 1 or 9999 moved out of range by the offset
                raise PayloadError("EventTimeIso8601", "out of range in UTC") from None
    raise PayloadError("EventTime", "missing: needs EventTime (/Date(ms)/) or EventTimeIso8601 with a zone")


# -- data events -------------------------------------------------------------------------------------------


def _data_event(item: Mapping[str, Any], maps: MapSet) -> list[ChangeEvent | Skipped]:
    """One event per map whose event entity is the event's (each read with its own names and key: `_per_map`);
    Skipped when no map has the entity."""
    message = item.get("MessageName")
    if not isinstance(message, str) or message not in DATA_MESSAGES:
        shown = printable(message) if isinstance(message, str) else kind_of(message)
        raise PayloadError("MessageName", f"{shown!r} is not one of Create, Update, Delete")
    entity_name = required_string(item, "PrimaryEntityName")
    table_maps = _concerned([m for m in maps.values() if m.fno.event_entity == entity_name])
    if not table_maps:
        return [Skipped(entity=entity_name, reason=f"no map has data event entity {entity_name}",
                        event_id=_source_id(item, "OperationId"))]
    target, target_path, pre_image = _inputs(item)
    # The event's attributes, read once (pre image first, the target's on top); each map takes those it names.
    attributes: list[dict[str, Any]] = []
    if pre_image is not None:
        attributes.append(entity_attributes(pre_image[0], pre_image[1]))
    if message == "Delete":
        if not (isinstance(target, dict) and type_name(target) == "EntityReference"):
            raise PayloadError(target_path, "a Delete Target must be an EntityReference")
        attributes.append({key: value for key, value, _ in
                           key_values(target.get("KeyAttributes"), f"{target_path}.KeyAttributes")})
    else:
        if not isinstance(target, dict) or type_name(target) not in (None, "Entity"):
            raise PayloadError(target_path, f"a {message} Target must be an Entity")
        attributes.append(entity_attributes(target, target_path))
    event_id = "fno:" + guid(item.get("OperationId"), "OperationId")
    return _per_map(table_maps, entity_name, event_id,
                    lambda table_map: _data_change(item, table_map, message, attributes, target_path, event_id))


def _data_change(item: Mapping[str, Any], table_map: TableMap, message: str,
                 attributes: list[dict[str, Any]], target_path: str, event_id: str) -> ChangeEvent:
    """The data event as a change of `table_map`'s entity, its attributes read by the map's F&O names."""
    names = _fno_names(table_map)
    found: dict[str, Any] = {}
    for layer in attributes:
        found.update(_translated(layer, names))
    keys: dict[str, Any] = {}
    for name in table_map.fno.key:
        value = found.get(name)
        if value is None or value == "":
            raise PayloadError(target_path, f"key field {ATTRIBUTE_PREFIX}{name.lower()} missing")
        if isinstance(value, dict | list):
            raise PayloadError(target_path, f"key field {ATTRIBUTE_PREFIX}{name.lower()} is not a plain value")
        keys[name] = value
    company = None
    if table_map.company is not None:
        code = keys[table_map.company.fno]
        if not isinstance(code, str):
            raise PayloadError(target_path, f"{ATTRIBUTE_PREFIX}{table_map.company.fno.lower()} is not a text")
        company = code.upper()
    return change_event(
        DATA_FIELDS,
        event_id=event_id,
        source="fno",
        entity=table_map.fno.entity_set,
        operation=DATA_MESSAGES[message],
        company=company,
        record_id=guid(item["PrimaryEntityId"], "PrimaryEntityId") if item.get("PrimaryEntityId") else None,
        keys=keys,
        partial=True,
        version=_data_version(item, found),
        occurred_at=context_time(item, "OperationCreatedOn"),
        initiated_by=optional_string(item, "InitiatingUserAzureActiveDirectoryObjectId")
        or optional_string(item, "InitiatingUserId"),
        correlation_id=optional_string(item, "CorrelationId"),
    )


def _inputs(item: Mapping[str, Any]) -> tuple[Any, str, tuple[dict[str, Any], str] | None]:
    """Target (value, path) and the pre image (InputParameters PreImage or PreEntityImages), if any."""
    target: tuple[Any, str] | None = None
    pre: tuple[dict[str, Any], str] | None = None
    for key, value, path in key_values(item.get("InputParameters"), "InputParameters"):
        if key == "Target" and value is not None:
            target = (value, path)
        elif key == "PreImage" and value is not None:
            if not isinstance(value, dict):
                raise PayloadError(path, f"expected an Entity object, found {kind_of(value)}")
            pre = (value, path)
    if pre is None:
        found = images(item, "PreEntityImages")
        pre = (found[0][1], found[0][2]) if found else None
    if target is None:
        raise PayloadError("InputParameters", "no Target")
    return target[0], target[1], pre


def _fno_names(table_map: TableMap) -> dict[str, str]:
    """Virtual-entity attribute name (mserp_ + lower case) -> F&O field name, for the fields the map uses."""
    names = [*table_map.fno.key, *(f.fno for f in table_map.fields if f.fno)]
    names += [name for lookup in table_map.lookups for name in lookup.fno]
    if table_map.company is not None:
        names.append(table_map.company.fno)
    names.append("ModifiedDateTime")
    return {ATTRIBUTE_PREFIX + name.lower(): name for name in names}


def _translated(attributes: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {names[key.lower()]: value for key, value in attributes.items() if key.lower() in names}


def _data_version(item: Mapping[str, Any], found: Mapping[str, Any]) -> str | None:
    control = item.get("ControlNumber")
    if isinstance(control, int) and not isinstance(control, bool):
        return str(control)
    modified = found.get("ModifiedDateTime")
    if isinstance(modified, datetime):
        return modified.isoformat().replace("+00:00", "Z")
    return str(modified) if isinstance(modified, str) and modified else None
