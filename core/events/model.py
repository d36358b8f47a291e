"""The change event: one source change, normalised, as it travels on the changes queue.

JSON on the wire, versioned (`"v": 1`). Values keep their source field names and a JSON-safe
canonical form: decimals as strings with every digit, datetimes as ISO 8601 UTC, choices as
ints, Dataverse lookups as `{"@ref": {"table", "id"}}` (a row id the apply step resolves to a key).
The map named in `map` is the one this copy feeds: ingest makes one message per map.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

Operation = Literal["create", "update", "delete", "refetch"]
Source = Literal["fno", "dataverse"]


def wire_value(value: Any) -> Any:
    """A value in the event's JSON-safe form (Decimal -> str, datetime -> ISO UTC, nested as is)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"datetime {value.isoformat()} has no time zone")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        raise ValueError(f"float {value!r} would lose precision: parse payloads with Decimal")
    if isinstance(value, dict):
        return {k: wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    return value


def lookup_ref(table: str, row_id: str) -> dict[str, Any]:
    """How a Dataverse lookup travels: the referenced table and row id (resolved to a key on apply)."""
    return {"@ref": {"table": table, "id": row_id.lower()}}


def as_lookup_ref(value: Any) -> tuple[str, str] | None:
    """(table, id) when `value` is a lookup reference made by `lookup_ref`, else None."""
    if isinstance(value, dict) and isinstance(value.get("@ref"), dict):
        ref = value["@ref"]
        return str(ref.get("table", "")), str(ref.get("id", ""))
    return None


class ChangeEvent(BaseModel):
    """One change of one record on one side, as ingest understood it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    event_id: str = Field(min_length=1, description="Stable id of the source event (duplicate detection)")
    map: str | None = Field(None, description="The map this copy feeds (set by ingest, one message per map)")
    source: Source
    entity: str = Field(min_length=1, description="F&O entity set (CustomersV3) or Dataverse table (account)")
    operation: Operation
    company: str | None = Field(None, description="Company code, upper case, when the event tells it")
    record_id: str | None = Field(None, description="Dataverse row id; the F&O event's PrimaryEntityId if any")
    keys: dict[str, Any] = Field(default_factory=dict, description="Key fields the event carries, by source name")
    values: dict[str, Any] = Field(default_factory=dict, description="Values the event carries, by source name")
    pre: dict[str, Any] | None = Field(None, description="Pre-image values (deletes take their key from here)")
    partial: bool = Field(True, description="values may lack fields: fetch the record for what is missing")
    version: str | None = Field(None, description="Source version: Dataverse RowVersion, F&O ControlNumber")
    occurred_at: datetime = Field(description="When the change happened at the source (UTC)")
    initiated_by: str | None = Field(None, description="Initiating user (Entra object id or systemuser id)")
    correlation_id: str | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # an offset moving year 1 or 9999 out of range: a ValueError, as pydantic needs
            raise ValueError("occurred_at is out of range in UTC") from None

    @field_serializer("keys", "values", "pre")
    def _wire(self, value: dict[str, Any] | None) -> Any:
        return None if value is None else wire_value(value)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> ChangeEvent:
        return cls.model_validate_json(text)

    def record(self) -> dict[str, Any]:
        """Everything the event knows of the record: pre image, then keys, then values on top."""
        return {**(self.pre or {}), **self.keys, **self.values} if self.operation != "delete" else {
            **self.keys, **(self.pre or {})}


class Skipped(BaseModel):
    """Part of a payload that made no change event, and why (recorded, never silently dropped)."""

    model_config = ConfigDict(frozen=True)

    entity: str = Field(description="The entity, table or business event the payload part was about")
    reason: str
    event_id: str = Field("", description="The source event, when the payload part had an id")
