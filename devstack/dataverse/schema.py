"""The table model of the simulator, loaded from schema.json: tables, typed columns, alternate keys,
lookups and their navigation properties. Value validation lives here too, because the rules (max
length, precision, ranges, option sets) are properties of the column."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from devstack.dataverse.errors import DataverseError

SCHEMA_PATH = Path(__file__).with_name("schema.json")

ColumnType = Literal[
    "string", "memo", "integer", "bigint", "decimal", "money", "double", "boolean", "datetime",
    "choice", "state", "status", "lookup", "uniqueidentifier",
]

# Dataverse's AttributeType names, as EntityDefinitions/Attributes report them.
ATTRIBUTE_TYPES: dict[str, str] = {
    "string": "String", "memo": "Memo", "integer": "Integer", "bigint": "BigInt", "decimal": "Decimal",
    "money": "Money", "double": "Double", "boolean": "Boolean", "datetime": "DateTime",
    "choice": "Picklist", "state": "State", "status": "Status", "lookup": "Lookup",
    "uniqueidentifier": "Uniqueidentifier",
}
METADATA_TYPES: dict[str, str] = {
    "string": "StringAttributeMetadata", "memo": "MemoAttributeMetadata", "integer": "IntegerAttributeMetadata",
    "bigint": "BigIntAttributeMetadata", "decimal": "DecimalAttributeMetadata", "money": "MoneyAttributeMetadata",
    "double": "DoubleAttributeMetadata", "boolean": "BooleanAttributeMetadata",
    "datetime": "DateTimeAttributeMetadata", "choice": "PicklistAttributeMetadata",
    "state": "StateAttributeMetadata", "status": "StatusAttributeMetadata", "lookup": "LookupAttributeMetadata",
    "uniqueidentifier": "UniqueIdentifierAttributeMetadata",
}
EDM_TYPES: dict[str, str] = {
    "string": "Edm.String", "memo": "Edm.String", "integer": "Edm.Int32", "bigint": "Edm.Int64",
    "decimal": "Edm.Decimal", "money": "Edm.Decimal", "double": "Edm.Double", "boolean": "Edm.Boolean",
    "datetime": "Edm.DateTimeOffset", "choice": "Edm.Int32", "state": "Edm.Int32", "status": "Edm.Int32",
    "lookup": "Edm.Guid", "uniqueidentifier": "Edm.Guid",
}
INT32 = (-2147483648, 2147483647)
# Room for any money or decimal value while it is rounded to its column's precision (made once: a context per
# value would be the slowest part of a large load).
_WIDE = Context(prec=60)
PAYLOAD_ERROR = "0x80048d19"  # "Error identified in Payload provided by the user for Entity"
VALIDATION_ERROR = "0x80044331"

# Columns the platform maintains on every table; never writable by a client.
SYSTEM_COLUMNS: list[dict[str, Any]] = [
    {"name": "createdon", "type": "datetime", "readOnly": True},
    {"name": "modifiedon", "type": "datetime", "readOnly": True},
    {"name": "createdby", "type": "lookup", "targets": ["systemuser"], "readOnly": True},
    {"name": "modifiedby", "type": "lookup", "targets": ["systemuser"], "readOnly": True},
    {"name": "createdonbehalfby", "type": "lookup", "targets": ["systemuser"], "readOnly": True},
    {"name": "modifiedonbehalfby", "type": "lookup", "targets": ["systemuser"], "readOnly": True},
    {"name": "versionnumber", "type": "bigint", "readOnly": True},
]
STATE_COLUMNS: list[dict[str, Any]] = [
    {"name": "statecode", "type": "state", "options": {"0": "Active", "1": "Inactive"}},
    {"name": "statuscode", "type": "status", "options": {"1": "Active", "2": "Inactive"}},
]


@dataclass(frozen=True)
class Ref:
    """A lookup value: the target table and the row id (an EntityReference)."""

    table: str
    id: str


@dataclass
class Column:
    name: str
    type: ColumnType
    table: str
    max_length: int | None = None
    precision: int | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    required: str = "None"
    options: dict[int, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    navigation: dict[str, str] = field(default_factory=dict)
    read_only: bool = False
    valid_for_read: bool = True
    computed: str | None = None
    date_only: bool = False
    # What deleting the referenced row does to this lookup: clear it (most relationships) or delete this
    # row too (parental relationships such as contact.parentcustomerid).
    on_delete: Literal["RemoveLink", "Cascade"] = "RemoveLink"
    # A virtual table's column: the property name in the external OData service (AttributeMetadata.ExternalName).
    external_name: str | None = None

    @property
    def is_lookup(self) -> bool:
        return self.type == "lookup"

    @property
    def value_property(self) -> str:
        """The name a client reads/filters the column by: `_x_value` for lookups."""
        return f"_{self.name}_value" if self.is_lookup else self.name

    def nav_for(self, target: str) -> str:
        if target in self.navigation:
            return self.navigation[target]
        return self.name if len(self.targets) == 1 else f"{self.name}_{target}"

    def coerce(self, raw: Any) -> Any:
        """A client's JSON value -> the stored Python value, or a 400 naming the column."""
        if raw is None:
            return None
        kind = self.type
        if kind in ("string", "memo"):
            if not isinstance(raw, str):
                raise self._payload_error(raw, "Edm.String")
            if self.max_length is not None and len(raw) > self.max_length:
                raise DataverseError(
                    400, VALIDATION_ERROR,
                    f"A validation error occurred.  The length of the '{self.name}' attribute of the "
                    f"'{self.table}' entity exceeded the maximum allowed length of '{self.max_length}'.",
                )
            return raw
        if kind in ("integer", "bigint", "choice", "state", "status"):
            if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
                raise self._payload_error(raw, EDM_TYPES[kind])
            if isinstance(raw, Decimal):
                if raw != raw.to_integral_value():
                    raise self._payload_error(raw, EDM_TYPES[kind])
                raw = int(raw)
            if kind in ("choice", "state", "status"):
                if self.options and raw not in self.options:
                    raise DataverseError(
                        400, VALIDATION_ERROR,
                        f"A validation error occurred.  The value {raw} of '{self.name}' on record of type "
                        f"'{self.table}' is outside the valid range. Accepted Values: "
                        + ",".join(str(k) for k in self.options),
                    )
                return raw
            self._check_range(Decimal(raw))
            return raw
        if kind in ("decimal", "money", "double"):
            if isinstance(raw, bool) or not isinstance(raw, int | Decimal | float):
                raise self._payload_error(raw, EDM_TYPES[kind])
            value = Decimal(str(raw)) if isinstance(raw, float) else Decimal(raw)
            if not value.is_finite():
                raise self._payload_error(raw, EDM_TYPES[kind])
            self._check_range(value)
            if self.precision is not None:
                # Dataverse rounds to the column's precision rather than rejecting extra digits.
                value = value.quantize(Decimal(1).scaleb(-self.precision), rounding=ROUND_HALF_UP, context=_WIDE)
            return value
        if kind == "boolean":
            if not isinstance(raw, bool):
                raise self._payload_error(raw, "Edm.Boolean")
            return raw
        if kind == "datetime":
            if not isinstance(raw, str):
                raise self._payload_error(raw, "Edm.DateTimeOffset")
            try:
                return format_datetime(parse_datetime(raw), date_only=self.date_only)
            except ValueError:
                raise self._payload_error(raw, "Edm.DateTimeOffset") from None
        if kind == "uniqueidentifier":
            if not isinstance(raw, str):
                raise self._payload_error(raw, "Edm.Guid")
            try:
                return str(uuid.UUID(raw))
            except ValueError:
                raise self._payload_error(raw, "Edm.Guid") from None
        raise self._payload_error(raw, EDM_TYPES[kind])

    def _check_range(self, value: Decimal) -> None:
        low = self.min_value if self.min_value is not None else None
        high = self.max_value if self.max_value is not None else None
        if self.type == "integer":
            low = Decimal(INT32[0]) if low is None else low
            high = Decimal(INT32[1]) if high is None else high
        if (low is not None and value < low) or (high is not None and value > high):
            raise DataverseError(
                400, VALIDATION_ERROR,
                f"A validation error occurred.  The value {value} of '{self.name}' on record of type "
                f"'{self.table}' is outside the valid range. Accepted range: {low} to {high}",
            )

    def _payload_error(self, raw: Any, edm: str) -> DataverseError:
        return DataverseError(
            400, PAYLOAD_ERROR,
            f"Error identified in Payload provided by the user for Entity :'{self.table}', For more information "
            f"on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  "
            f"InnerException : Microsoft.OData.ODataException: Cannot convert the literal '{raw}' to the expected "
            f"type '{edm}' for the property '{self.name}'.",
        )

    def from_storage(self, value: Any) -> Any:
        if value is None:
            return None
        if self.type in ("decimal", "money", "double"):
            return Decimal(value)
        if self.is_lookup:
            return Ref(value[0], value[1])
        return value


@dataclass(frozen=True)
class AlternateKey:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Relationship:
    """A one-to-many collection navigation property (e.g. serviceendpoint_sdkmessageprocessingstep)."""

    name: str
    table: str
    column: str


@dataclass(frozen=True)
class VirtualSource:
    """What makes a table virtual: the data provider, its data source row and the external names."""

    data_provider_id: str
    data_source_id: str
    external_name: str
    external_collection_name: str
    metadata_id: str


@dataclass
class Table:
    logical_name: str
    entity_set: str
    display_name: str
    primary_id: str
    primary_name: str
    change_tracking: bool
    columns: dict[str, Column]
    keys: list[AlternateKey]
    relationships: list[Relationship]
    system: bool = False
    # Set on a virtual table: where its rows live (EntityMetadata DataProviderId, DataSourceId, ExternalName...).
    virtual: VirtualSource | None = None

    @cached_property
    def by_value_property(self) -> dict[str, Column]:
        """Every name a client may use in $select/$filter/$orderby: plain columns and `_x_value`."""
        return {c.value_property: c for c in self.columns.values() if c.valid_for_read}

    # Column groups every write walks (a 100,000-row /_sim/load too): found once.
    @cached_property
    def computed(self) -> list[Column]:
        return [c for c in self.columns.values() if c.computed]

    @cached_property
    def system_required(self) -> list[Column]:
        return [c for c in self.columns.values() if c.required == "SystemRequired" and not c.read_only]

    @cached_property
    def navigation(self) -> dict[str, tuple[Column, str]]:
        """Single-valued navigation property name -> (lookup column, target table)."""
        out: dict[str, tuple[Column, str]] = {}
        for column in self.columns.values():
            if column.is_lookup:
                for target in column.targets:
                    out[column.nav_for(target)] = (column, target)
        return out

    def decode(self, stored: dict[str, Any]) -> dict[str, Any]:
        return {k: self.columns[k].from_storage(v) for k, v in stored.items() if k in self.columns}

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        # Decimals are stored as text, lookups as [table, id]; the rest as they are (from_storage reads them back).
        return {k: str(v) if isinstance(v, Decimal) else [v.table, v.id] if isinstance(v, Ref) else v
                for k, v in row.items()}


class Schema:
    def __init__(self, tables: list[Table]) -> None:
        self.tables = {t.logical_name: t for t in tables}
        self.by_set = {t.entity_set: t for t in tables}

    def table(self, logical_name: str) -> Table:
        return self.tables[logical_name]

    def add(self, table: Table) -> None:
        """A table defined at run time (a virtual table created through EntityDefinitions)."""
        self.tables[table.logical_name] = table
        self.by_set[table.entity_set] = table

    def table_for_set(self, entity_set: str) -> Table:
        try:
            return self.by_set[entity_set]
        except KeyError:
            raise DataverseError(
                404, "0x8006088a", f"Resource not found for the segment '{entity_set}'."
            ) from None


def _column(table: str, spec: dict[str, Any]) -> Column:
    def dec(v: Any) -> Decimal | None:
        return None if v is None else Decimal(str(v))

    return Column(
        name=spec["name"], type=spec["type"], table=table, max_length=spec.get("maxLength"),
        precision=spec.get("precision"), min_value=dec(spec.get("minValue")), max_value=dec(spec.get("maxValue")),
        required=spec.get("required", "None"), options={int(k): v for k, v in spec.get("options", {}).items()},
        targets=list(spec.get("targets", [])), navigation=dict(spec.get("navigation", {})),
        read_only=bool(spec.get("readOnly", False)), valid_for_read=bool(spec.get("validForRead", True)),
        computed=spec.get("computed"), date_only=spec.get("format") == "DateOnly",
        on_delete=spec.get("onDelete", "RemoveLink"), external_name=spec.get("externalName"),
    )


def load_schema(path: Path = SCHEMA_PATH) -> Schema:
    doc = json.loads(path.read_text())
    tables = []
    for t in doc["tables"]:
        name = t["logicalName"]
        specs = [{"name": t["primaryId"], "type": "uniqueidentifier", "required": "SystemRequired"}, *t["columns"]]
        declared = {s["name"] for s in specs}
        if not t.get("noState"):
            specs += [s for s in STATE_COLUMNS if s["name"] not in declared]
        specs += SYSTEM_COLUMNS
        columns = {s["name"]: _column(name, s) for s in specs}
        tables.append(Table(
            logical_name=name, entity_set=t["entitySetName"], display_name=t.get("displayName", name),
            primary_id=t["primaryId"], primary_name=t["primaryName"], change_tracking=bool(t.get("changeTracking")),
            columns=columns, keys=[AlternateKey(k["name"], tuple(k["columns"])) for k in t.get("keys", [])],
            relationships=[Relationship(r["name"], r["table"], r["column"]) for r in t.get("relationships", [])],
            system=bool(t.get("system")),
        ))
    return Schema(tables)


def parse_datetime(text: str) -> datetime:
    """ISO 8601 with Z or offset, or a bare date; always returned timezone-aware in UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_datetime(value: datetime, *, date_only: bool = False) -> str:
    if date_only:
        return value.strftime("%Y-%m-%d")
    # Dataverse keeps whole seconds and answers in UTC with a Z.
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow_text() -> str:
    return format_datetime(datetime.now(UTC))
