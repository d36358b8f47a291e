"""A virtual table definition: one JSON file per table in virtualtables/, validated by this pydantic model.

The committed JSON Schema (virtualtables/virtualtable.schema.json) is generated from it (core.virtual.schema)."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# What Dataverse's OData v4 Data Provider maps (Microsoft Learn, virtual-entity-odata-provider-requirements);
# Binary, Time, Float, Single, Int16, Byte and SByte it does not, so a definition cannot name them.
EdmType = Literal[
    "Edm.Boolean",
    "Edm.DateTime",
    "Edm.DateTimeOffset",
    "Edm.Decimal",
    "Edm.Double",
    "Edm.Guid",
    "Edm.Int32",
    "Edm.Int64",
    "Edm.String",
]
Operation = Literal["read", "create", "update", "delete"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    name: str = Field(description="OData property name (the column's external name in Dataverse; case-sensitive)")
    type: EdmType = Field(description="EDM type of the property")
    source: str | None = Field(None, description="Column / field / property name in the source (default: name)")
    nullable: bool = Field(True, description="false: Nullable=false in $metadata (a Business Required column)")
    max_length: int | None = Field(None, ge=1, description="Edm.String MaxLength")
    scale: int | None = Field(None, ge=0, le=28, description="Edm.Decimal Scale (digits after the point)")
    filterable: bool = Field(True, description="false: $filter and $orderby on it are refused with a 400")

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @field_validator("name")
    @classmethod
    def _odata_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter or _ and hold letters, digits and _ only (an OData name)")
        return value


class GuidColumnKey(_Strict):
    """The source has a GUID column: it is the id as is."""

    kind: Literal["column"]
    column: str = Field(description="the Edm.Guid column (by name) that is the id")


class DerivedKey(_Strict):
    """The source's key is not a GUID (a string, a number, a composite key): the id is a UUIDv5 of the key's values,
    remembered in a reverse index (core.virtual.keys) so a GUID from Dataverse finds its row again."""

    kind: Literal["uuid5"]
    columns: list[str] = Field(min_length=1, description="the source key's columns (by name), in key order")
    namespace: uuid.UUID = Field(description="UUIDv5 namespace of this table (any fixed UUID; never change it)")
    id_name: str = Field("Id", description="name of the Edm.Guid key property the service adds")


class SqlSource(_Strict):
    kind: Literal["sql"]
    url_setting: str = Field(
        "VIRTUAL_TABLES_SQL_URL", description="app setting (environment variable) holding the SQLAlchemy URL"
    )
    table: str = Field(description="table (or view) name")
    schema_name: str | None = Field(None, alias="schema", description="database schema")


class FnoSource(_Strict):
    kind: Literal["fno"]
    entity_set: str = Field(description="F&O data entity's public collection name, e.g. CustomerGroups")
    cross_company: bool = Field(True, description="read every legal entity (dataAreaId is then part of the key)")


class TablesSource(_Strict):
    kind: Literal["tables"]
    table: str = Field(description="Azure Table Storage table (account: TABLE_STORAGE_CONNECTION)")


Source = Annotated[SqlSource | FnoSource | TablesSource, Field(discriminator="kind")]


class Notify(_Strict):
    """Tell Dataverse about changes made at the source (OnExternalCreated / OnExternalUpdated), found by polling a
    change column, so the virtual table's flows and asynchronous plug-ins run (core.virtual.notify)."""

    changed_column: str | None = Field(
        None,
        description="a date-time column the source sets on every insert and update (polled by the vt_notify timer)",
    )
    created_column: str | None = Field(
        None,
        description="a date-time column set on insert only: a row created since the last poll is "
        "OnExternalCreated (without it every change is OnExternalUpdated)",
    )
    deleted_column: str | None = Field(
        None,
        description="a Boolean column a soft delete sets (the row stays, flagged): a change that sets it is "
        "OnExternalDeleted (rows deleted outright cannot be found by polling)",
    )
    batch: int = Field(500, ge=1, le=5000, description="most changes told per poll (the rest at the next)")
    fno_events: bool = Field(
        False,
        description="an F&O source only: F&O business/data events of its entity arriving at the ingest are told "
        "(core.virtual.events), deletes included",
    )


class VirtualTable(_Strict):
    """One entity set of the OData v4 service."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_ref: str | None = Field(None, alias="$schema", description="editor hint; ignored")
    entity_set: str = Field(description="OData entity set name = the table's external collection name in Dataverse")
    entity_type: str | None = Field(None, description="OData entity type name (default: entity set name)")
    description: str = ""
    source: Source
    columns: list[Column] = Field(min_length=1)
    key: GuidColumnKey | DerivedKey = Field(discriminator="kind")
    operations: list[Operation] = Field(default_factory=lambda: list[Operation](["read"]))
    page_size: int = Field(50, ge=1, le=5000, description="rows a page when the caller asks for no $top")
    max_page_size: int = Field(500, ge=1, le=5000, description="most rows a response carries (larger $top pages on)")
    notify: Notify | None = Field(None, description="poll the source for changes and tell Dataverse")
    python_filter_limit: int = Field(
        5000,
        ge=0,
        le=100_000,
        description="a filter the source cannot run is evaluated here only when the source "
        "rows it would read are at most this many (else 400)",
    )

    @property
    def type_name(self) -> str:
        return self.entity_type or self.entity_set

    @property
    def id_name(self) -> str:
        return self.key.column if isinstance(self.key, GuidColumnKey) else self.key.id_name

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @field_validator("entity_set", "entity_type")
    @classmethod
    def _odata_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("must start with a letter or _ and hold letters, digits and _ only (an OData name)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VirtualTable:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"columns: a name appears twice: {sorted({n for n in names if names.count(n) > 1})}")
        key_names = [self.key.column] if isinstance(self.key, GuidColumnKey) else self.key.columns
        optional = [n for n in key_names if (c := self.column(n)) is not None and c.nullable]
        if optional:
            raise ValueError(f"key: {optional} must be nullable: false (a row's id is made of them)")
        if isinstance(self.key, GuidColumnKey):
            column = self.column(self.key.column)
            if column is None or column.type != "Edm.Guid":
                raise ValueError(
                    f"key.column: {self.key.column!r} must be one of the columns, of type Edm.Guid "
                    "(Dataverse takes no other id)"
                )
        else:
            missing = [k for k in self.key.columns if self.column(k) is None]
            if missing:
                raise ValueError(f"key.columns: {missing} are not columns of this table")
            if self.key.id_name in names:
                raise ValueError(f"key.id_name: {self.key.id_name!r} is already a column")
        if self.notify is not None:
            if self.notify.changed_column is None and not self.notify.fno_events:
                raise ValueError("notify: needs changed_column (polling) or fno_events (an F&O source)")
            if self.notify.fno_events and self.source.kind != "fno":
                raise ValueError("notify.fno_events: only an F&O source has F&O events")
            for field in ("changed_column", "created_column"):
                name = getattr(self.notify, field)
                column = None if name is None else self.column(name)
                if name is not None and (column is None or column.type not in ("Edm.DateTimeOffset", "Edm.DateTime")):
                    raise ValueError(f"notify.{field}: {name!r} must be a date-time column of this table")
            flag = self.notify.deleted_column
            if flag is not None and ((c := self.column(flag)) is None or c.type != "Edm.Boolean"):
                raise ValueError(f"notify.deleted_column: {flag!r} must be a Boolean column of this table")
        if "read" not in self.operations:
            raise ValueError("operations: must include read (Dataverse reads every table it shows)")
        if self.page_size > self.max_page_size:
            raise ValueError("page_size: must not exceed max_page_size")
        return self
