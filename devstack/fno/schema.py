"""The data-entity schema (entities.json) and the typed values of its fields.

Values inside the simulator are Python values: str, int, Decimal (real), date, aware datetime (UTC),
and enum symbols as str. F&O has no nulls in entity fields: every type has an empty value, and an
empty date/datetime is the 1900-01-01 sentinel F&O writes on the wire.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from devstack.fno.errors import ODataError

FieldType = Literal["string", "int", "real", "date", "utcdatetime", "enum"]
SCHEMA_PATH = Path(__file__).with_name("entities.json")
EMPTY_DATE = date(1900, 1, 1)
EMPTY_DATETIME = datetime(1900, 1, 1, tzinfo=UTC)
# Read-only system fields every entity gets: who changed the row last (the caller) and when.
SYSTEM_FIELDS = ("ModifiedBy", "ModifiedDateTime")


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    label: str = ""
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    enum: str | None = None
    mandatory: bool = False
    read_only: bool = False
    relation: str | None = None  # "Collection.Field" the value must exist in (checked when not empty)

    def empty(self) -> Any:
        return {
            "string": "",
            "int": 0,
            "real": Decimal(0),
            "date": EMPTY_DATE,
            "utcdatetime": EMPTY_DATETIME,
        }.get(self.type)


@dataclass
class Entity:
    name: str  # the public entity (type) name, e.g. CustomerV3
    collection: str  # the public collection name, the entity set, e.g. CustomersV3
    table: str  # the AOT entity name, used in infolog messages and data-event names
    label: str
    company_specific: bool
    keys: list[str]
    fields: dict[str, Field] = field(default_factory=dict)

    # Field groups every row write or read walks (a 100,000-row load, a page of a large set): found once.
    @functools.cached_property
    def text_fields(self) -> list[Field]:
        """The fields stored as text (real, date, utcdatetime); the others are stored as they are."""
        return [f for f in self.fields.values() if f.type in ("real", "date", "utcdatetime")]

    @functools.cached_property
    def mandatory(self) -> list[Field]:
        return [f for f in self.fields.values() if f.mandatory]

    @functools.cached_property
    def related(self) -> list[Field]:
        return [f for f in self.fields.values() if f.relation]


@dataclass
class Schema:
    namespace: str
    enums: dict[str, dict[str, int]]
    entities: dict[str, Entity]  # by collection name
    # Per entity, made once: every row write and read needs it.
    _empty_rows: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def entity(self, collection: str) -> Entity | None:
        return self.entities.get(collection)

    def default_enum(self, enum_name: str) -> str:
        symbols = self.enums[enum_name]
        return min(symbols, key=lambda s: symbols[s])

    def empty_value(self, fld: Field) -> Any:
        return self.default_enum(fld.enum) if fld.type == "enum" and fld.enum else fld.empty()

    def empty_row(self, entity: Entity) -> dict[str, Any]:
        """Every field's empty value: shared, so copy it before changing it (the values are immutable)."""
        row = self._empty_rows.get(entity.collection)
        if row is None:
            row = self._empty_rows[entity.collection] = {n: self.empty_value(f) for n, f in entity.fields.items()}
        return row

    # ---- input (JSON body values) -------------------------------------------------------------
    def parse_input(self, entity: Entity, fld: Field, value: Any) -> Any:
        """A JSON value from a request body as the field's Python value, or a 400 naming the field."""
        def bad(reason: str) -> ODataError:
            return ODataError(
                400,
                f"An error has occurred. Field '{fld.name}' of '{entity.name}': {reason}",
                inner=f"Cannot convert the value for field '{fld.name}': {reason}",
            )

        if value is None:
            return self.empty_value(fld)
        if fld.type == "string":
            if not isinstance(value, str):
                raise bad(f"expected Edm.String, got {type(value).__name__}")
            if fld.length is not None and len(value) > fld.length:
                raise ODataError(
                    400,
                    "An error has occurred.",
                    inner=f"The value '{value}' of field '{fld.name}' is {len(value)} characters long; "
                    f"the field allows at most {fld.length}.",
                )
            return value
        if fld.type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad(f"expected Edm.Int32, got {value!r}")
            return value
        if fld.type == "real":
            return self._parse_real(fld, value, bad)
        if fld.type == "enum":
            assert fld.enum is not None
            symbols = self.enums[fld.enum]
            if isinstance(value, str):
                # Clients may send the qualified literal form too.
                m = re.fullmatch(r"(?:[\w.]+)'(\w+)'", value)
                symbol = m.group(1) if m else value
                for s in symbols:
                    if s.lower() == symbol.lower():
                        return s
            raise ODataError(
                400,
                f"The value '{value}' is not valid for the enum type "
                f"'{self.namespace}.{fld.enum}' of field '{fld.name}'. Valid values: {', '.join(symbols)}.",
            )
        if fld.type == "date":
            return parse_date(value, fld.name)
        if fld.type == "utcdatetime":
            return parse_datetime(value, fld.name)
        raise AssertionError(fld.type)

    @staticmethod
    def _parse_real(fld: Field, value: Any, bad: Any) -> Decimal:
        if isinstance(value, bool):
            raise bad(f"expected Edm.Decimal, got {value!r}")
        if isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str):  # IEEE754Compatible clients send decimals as strings
            try:
                number = Decimal(value)
            except InvalidOperation:
                raise bad(f"'{value}' is not a decimal number") from None
        else:
            raise bad(f"expected Edm.Decimal, got {type(value).__name__}")
        if not number.is_finite():
            raise bad(f"'{value}' is not a finite number")
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)
        if fld.scale is not None and -exponent > fld.scale and number != number.quantize(Decimal(1).scaleb(-fld.scale)):
            raise bad(f"{value} has more than {fld.scale} decimal places")
        integer_digits = len(number.quantize(Decimal(1), rounding="ROUND_DOWN").copy_abs().as_tuple().digits)
        if fld.precision is not None and fld.scale is not None and integer_digits > fld.precision - fld.scale:
            raise bad(f"{value} is too large for precision {fld.precision}, scale {fld.scale}")
        return number

    # ---- storage (JSON in SQLite; decimals as text, never float) -------------------------------
    @staticmethod
    def to_store(fld: Field, value: Any) -> Any:
        if fld.type == "real":
            return format(value, "f")
        if fld.type == "date":
            return value.isoformat()
        if fld.type == "utcdatetime":
            return utc_text(value)
        return value

    @staticmethod
    def from_store(fld: Field, value: Any) -> Any:
        if fld.type == "real":
            return Decimal(value)
        if fld.type == "date":
            return date.fromisoformat(value)
        if fld.type == "utcdatetime":
            return datetime.fromisoformat(value)  # "...Z" (3.11 reads the Z; strptime is ten times slower)
        return value

    # ---- output (OData JSON) --------------------------------------------------------------------
    @staticmethod
    def to_wire(fld: Field, value: Any) -> Any:
        """F&O serializes dates as Edm.DateTimeOffset at 12:00 UTC, and datetimes to the second."""
        if fld.type == "date":
            return f"{value.isoformat()}T12:00:00Z"
        if fld.type == "utcdatetime":
            return utc_text(value)
        return value


@functools.lru_cache(maxsize=4096)
def utc_text(value: datetime) -> str:
    """`2024-01-31T10:00:00Z`; remembered, because the rows of one write or one page share a few stamps."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(value: Any, name: str) -> date:
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError:
            pass
    raise ODataError(400, f"The value '{value}' of field '{name}' is not a valid date (YYYY-MM-DD).")


def parse_datetime(value: Any, name: str) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                raise ODataError(
                    400, f"The value '{value}' of field '{name}' has no time zone; send UTC with a Z suffix."
                )
            return moment.astimezone(UTC).replace(microsecond=0)
    raise ODataError(400, f"The value '{value}' of field '{name}' is not a valid Edm.DateTimeOffset.")


def load_schema(path: Path = SCHEMA_PATH) -> Schema:
    raw = json.loads(path.read_text())
    enums = {name: dict(symbols) for name, symbols in raw["enums"].items()}
    entities: dict[str, Entity] = {}
    for spec in raw["entities"]:
        ent = Entity(
            name=spec["name"],
            collection=spec["collection"],
            table=spec["table"],
            label=spec.get("label", spec["name"]),
            company_specific=bool(spec["companySpecific"]),
            keys=list(spec["keys"]),
        )
        if ent.company_specific:
            if ent.keys[0] != "dataAreaId":
                raise ValueError(f"{ent.collection}: a company-specific entity has dataAreaId as first key")
            ent.fields["dataAreaId"] = Field("dataAreaId", "string", "Company", length=4, mandatory=True)
        for f in spec["fields"]:
            fld = Field(
                name=f["name"],
                type=f["type"],
                label=f.get("label", f["name"]),
                length=f.get("length"),
                precision=f.get("precision"),
                scale=f.get("scale"),
                enum=f.get("enum"),
                mandatory=bool(f.get("mandatory", False)),
                relation=f.get("relation"),
            )
            if fld.type not in ("string", "int", "real", "date", "utcdatetime", "enum"):
                raise ValueError(f"{ent.collection}.{fld.name}: unknown type {fld.type}")
            if fld.type == "enum" and fld.enum not in enums:
                raise ValueError(f"{ent.collection}.{fld.name}: unknown enum {fld.enum}")
            ent.fields[fld.name] = fld
        ent.fields["ModifiedBy"] = Field("ModifiedBy", "string", "Modified by", length=60, read_only=True)
        ent.fields["ModifiedDateTime"] = Field(
            "ModifiedDateTime", "utcdatetime", "Modified date and time", read_only=True
        )
        for k in ent.keys:
            if k not in ent.fields:
                raise ValueError(f"{ent.collection}: key field {k} is not a field")
        entities[ent.collection] = ent
    return Schema(namespace=raw["namespace"], enums=enums, entities=entities)
