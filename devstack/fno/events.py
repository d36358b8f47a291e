"""The event catalog and the payloads F&O sends: business events and data events.

Business events use the documented envelope (shared/reference/protocols.md 3.2). The two business
events here are OUR OWN custom events (F&O ships no "customer changed" business event); their ids
start with `DW` and their category says "custom". Data events use the RemoteExecutionContext form
as the reference reconstructs it (3.3); that wire form is unconfirmed against a live tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from devstack.fno import wire
from devstack.fno.schema import EMPTY_DATETIME, Entity, Schema
from devstack.fno.service import Change, Row

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ORGANIZATION_ID = uuid.UUID("5e9a4b8c-0f3a-4f7e-9a7d-6c1f2e3d4b5a")
_ID_NAMESPACE = uuid.UUID("a3c1f0de-2b7e-4c59-8f0e-1d2c3b4a5968")
TEST_EVENT_NOTE = "Test message sent on activation to verify the endpoint configuration."


@dataclass(frozen=True)
class BusinessEventDef:
    event_id: str
    entity: str  # collection that raises it
    category: str
    name: str
    contract_fields: tuple[str, ...]


BUSINESS_EVENTS = {
    e.event_id: e
    for e in (
        BusinessEventDef(
            "DWCustomerChangedBusinessEvent", "CustomersV3", "Accounts receivable (custom, dual-write simulator)",
            "Customer changed (custom)", ("CustomerAccount", "CustomerGroupId", "OrganizationName"),
        ),
        BusinessEventDef(
            "DWVendorChangedBusinessEvent", "VendorsV2", "Accounts payable (custom, dual-write simulator)",
            "Vendor changed (custom)", ("VendorAccountNumber", "VendorGroupId", "VendorOrganizationName"),
        ),
    )
}
DATA_OPERATIONS = ("Create", "Update", "Delete")


def data_event_id(entity: Entity, operation: str) -> str:
    return f"{entity.collection}.{operation}"


def catalog(schema: Schema) -> dict[str, list[dict[str, Any]]]:
    business = [
        {"eventId": e.event_id, "category": e.category, "name": e.name, "entity": e.entity, "custom": True,
         "payloadFields": [*e.contract_fields, "ChangeType", "LegalEntity"]}
        for e in BUSINESS_EVENTS.values()
    ]
    data = [
        {"eventId": data_event_id(ent, op), "category": "Data event", "name": f"{ent.label} {op}",
         "entity": ent.collection, "companySpecific": ent.company_specific}
        for ent in schema.entities.values()
        for op in DATA_OPERATIONS
    ]
    return {"businessEvents": business, "dataEvents": data}


def known_event(schema: Schema, event_id: str) -> bool:
    return event_id in BUSINESS_EVENTS or any(
        data_event_id(ent, op) == event_id for ent in schema.entities.values() for op in DATA_OPERATIONS
    )


def events_for(change: Change) -> list[str]:
    ids = [data_event_id(change.entity, change.operation)]
    ids += [e.event_id for e in BUSINESS_EVENTS.values() if e.entity == change.entity.collection]
    return ids


# ---- business events ---------------------------------------------------------------------------------
def envelope(
    event_id: str, legal_entity: str, control_number: int, initiating: uuid.UUID, at: datetime
) -> dict[str, Any]:
    return {
        "BusinessEventId": event_id,
        "BusinessEventLegalEntity": legal_entity.upper(),
        "ContextRecordSubject": "",
        "ControlNumber": control_number,
        "EventId": str(uuid.uuid4()).upper(),
        "EventTime": wire.ms_date(at),
        "EventTimeIso8601": wire.iso_7(at),
        "InitiatingUserAADObjectId": wire.braced_guid(initiating),
        "MajorVersion": 0,
        "MinorVersion": 0,
        "ParentContextRecordSubjects": [],
    }


def business_event(defn: BusinessEventDef, change: Change, control_number: int) -> dict[str, Any]:
    payload = envelope(defn.event_id, change.company, control_number, change.caller.object_id, datetime.now(UTC))
    row = change.after or change.before
    assert row is not None
    for name in defn.contract_fields:
        payload[name] = row[name]
    payload["ChangeType"] = change.operation
    payload["LegalEntity"] = change.company.upper()
    return dict(sorted(payload.items()))


def test_message(event_id: str, legal_entity: str, control_number: int, initiating: uuid.UUID) -> dict[str, Any]:
    payload = envelope(event_id, legal_entity, control_number, initiating, datetime.now(UTC))
    payload["ContextRecordSubject"] = TEST_EVENT_NOTE
    return payload


# ---- data events ------------------------------------------------------------------------------------------
def logical_name(entity: Entity) -> str:
    return f"mserp_{entity.table.lower()}"


def attribute_name(field_name: str) -> str:
    return f"mserp_{field_name.lower()}"


def record_id(entity: Entity, recid: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{entity.collection}:{recid}"))


def _attribute_value(schema: Schema, entity: Entity, name: str, value: Any) -> Any:
    fld = entity.fields[name]
    if fld.type in ("date", "utcdatetime"):
        return wire.ms_date(value)
    if fld.type == "enum":
        assert fld.enum is not None
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": schema.enums[fld.enum][value]}
    if fld.type == "real":
        return Decimal(value)
    return value


def _attributes(schema: Schema, entity: Entity, row: Row, names: list[str], rid: str) -> list[dict[str, Any]]:
    attrs = [{"key": f"{logical_name(entity)}id", "value": rid}]
    for name in names:
        value = row[name]
        fld = entity.fields[name]
        # Data events drop NULL datetimes; F&O's empty date is the 1900-01-01 sentinel.
        if fld.type == "utcdatetime" and value == EMPTY_DATETIME:
            continue
        if fld.type == "date" and value.year == 1900:
            continue
        attrs.append({"key": attribute_name(name), "value": _attribute_value(schema, entity, name, value)})
    return attrs


def _entity(schema: Schema, entity: Entity, row: Row, names: list[str], rid: str, typed: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"__type": f"Entity:{CONTRACTS}"} if typed else {}
    body.update({
        "Attributes": _attributes(schema, entity, row, names, rid),
        "EntityState": None,
        "FormattedValues": [],
        "Id": rid,
        "KeyAttributes": [],
        "LogicalName": logical_name(entity),
        "RelatedEntities": [],
        "RowVersion": str(row.get("@version", "")) or None,
    })
    return body


def data_event(schema: Schema, change: Change) -> dict[str, Any]:
    entity = change.entity
    rid = record_id(entity, change.recid)
    all_fields = list(entity.fields)
    inputs: list[dict[str, Any]] = []
    if change.operation == "Delete":
        assert change.before is not None
        inputs.append({"key": "Target", "value": {
            "__type": f"EntityReference:{CONTRACTS}", "Id": rid,
            "KeyAttributes": [{"key": attribute_name(k), "value": change.before[k]} for k in entity.keys],
            "LogicalName": logical_name(entity), "Name": None, "RowVersion": None,
        }})
    else:
        assert change.after is not None
        names = all_fields if change.operation == "Create" else list(
            dict.fromkeys([*entity.keys, *change.changed, "ModifiedBy", "ModifiedDateTime"])
        )
        inputs.append({"key": "Target", "value": _entity(schema, entity, change.after, names, rid, True)})
    if change.before is not None:
        inputs.append({"key": "PreImage", "value": _entity(schema, entity, change.before, all_fields, rid, False)})
    oid = str(change.caller.object_id)
    return {
        "BusinessUnitId": str(uuid.UUID(int=0)),
        "CorrelationId": str(uuid.uuid4()),
        "Depth": 1,
        "InitiatingUserAzureActiveDirectoryObjectId": oid,
        "InitiatingUserId": oid,
        "InputParameters": inputs,
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": change.operation,
        "Mode": 1,
        "OperationCreatedOn": wire.ms_date(change.at)[:-2] + "+0000)/",
        "OperationId": str(uuid.uuid4()),
        "OrganizationId": str(ORGANIZATION_ID),
        "OrganizationName": "fno-simulator",
        "OutputParameters": [],
        "OwningExtension": {"Id": str(uuid.UUID(int=0)), "KeyAttributes": [], "LogicalName": "sdkmessageprocessingstep",
                            "Name": None, "RowVersion": None},
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "PrimaryEntityId": rid,
        "PrimaryEntityName": logical_name(entity),
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserAzureActiveDirectoryObjectId": oid,
        "UserId": oid,
    }


def wcf_json(payload: dict[str, Any]) -> str:
    """JSON the way the WCF DataContract serializer writes it: `/` escaped as `\\/`."""
    return wire.dumps(payload).replace("/", "\\/")
