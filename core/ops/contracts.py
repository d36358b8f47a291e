"""The management API's bodies as pydantic models: what the OpenAPI document (core.ops.openapi) is generated from.

Answers are described as the routes build them; a model leaves extra properties open where a route may add
context (a problem's own fields, a run's plan), so the document promises what is always there and its type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.maps.model import TableMap
from core.ops.alerts.evaluate import AlertState
from core.ops.alerts.rules import AlertRule
from core.ops.errors import BULK_LIMIT
from core.ops.health import HealthReport
from core.store.alerts import HistoryEntry
from core.store.errors import Category, ErrorStatus
from core.sync.domain import Outcome
from core.sync.initial import RunRequest
from core.sync.modes import MapMode

__all__ = ["HealthReport", "RunRequest"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class InvalidParam(BaseModel):
    name: str
    reason: str


class Problem(_Open):
    """RFC 9457 problem details; routes add the context they have (`map`, `field`, `problems`, ...)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] | None = None


# -- error log ----------------------------------------------------------------------------------------------
class ErrorSummary(_Open):
    id: str
    map: str
    key: str
    source: str
    operation: str
    category: Category
    text: str = Field(description="the start of the full text (GET by id: all of it)")
    text_length: int
    attempts: int
    session_id: str
    first_at: datetime
    last_at: datetime
    status: ErrorStatus
    target_status: int | None = None
    target_code: str | None = None
    run_id: str | None = None


class ErrorDetail(ErrorSummary):
    change: str = Field(description="the change as it was queued (a change event's JSON, or an F&O event's body)")


class ErrorList(BaseModel):
    errors: list[ErrorSummary]


class Resubmitted(BaseModel):
    id: str
    status: Literal["resubmitted"]
    message_id: str | None
    accepted: int


class Discarded(BaseModel):
    id: str
    status: Literal["discarded"]


class BulkFailure(BaseModel):
    id: str
    detail: str


class BulkResubmitted(BaseModel):
    resubmitted: int
    ids: list[str]
    failed: list[BulkFailure]


class BulkDiscarded(BaseModel):
    discarded: int
    ids: list[str]
    failed: list[BulkFailure]


# -- activity -----------------------------------------------------------------------------------------------
class ActivityItem(_Open):
    map: str
    key: str
    source: str
    operation: str
    outcome: Outcome
    reason: str
    event_id: str
    message_id: str
    target_id: str | None = None
    detail: str | None = None
    latency_ms: float | None = None
    at: datetime


class ActivityList(BaseModel):
    entries: list[ActivityItem]


# -- map modes ----------------------------------------------------------------------------------------------
class Parked(BaseModel):
    records: int
    changes: int


class CatchUpProgress(_Open):
    parked_at_resume: int
    sent: int
    left: int
    rate_per_s: float | None
    started_at: datetime
    finished_at: datetime | None


class ModeView(_Open):
    map: str
    mode: MapMode
    label: str
    since: datetime | None
    by: str | None
    reason: str | None
    parked: Parked
    catch_up: CatchUpProgress | None = None


class ModeList(BaseModel):
    maps: list[ModeView]
    maps_loaded_at: datetime | None
    maps_problem: str | None


class Transition(BaseModel):
    from_: MapMode = Field(alias="from")
    to: MapMode
    at: datetime
    by: str
    reason: str


class ModeDetail(ModeView):
    transitions: list[Transition]


class ModeMove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


# -- maps and their revisions ----------------------------------------------------------------------------
class MapSummary(_Open):
    name: str
    title: str | None
    version: str
    revision: int | None = Field(description="the stored revision running; null: the map file")
    origin: str
    enabled: bool


class MapList(BaseModel):
    maps: list[MapSummary]
    loaded_at: datetime | None
    maps_problem: str | None


class MapShown(MapSummary):
    latest_revision: int | None
    loaded_at: datetime | None
    definition: dict[str, Any] = Field(description="the map as maps/map.schema.json describes it")


class MapStored(_Open):
    map: str
    revision: int
    version: str
    by: str
    at: datetime
    reason: str
    takes_effect_within_seconds: int
    maps_problem: str | None


class MapProblem(_Open):
    map: str | None
    field: str | None
    message: str
    origin: str | None = None
    severity: Literal["error", "warning"] | None = None


class MapValidation(BaseModel):
    map: str
    valid: bool
    problems: list[MapProblem]


class Revision(_Open):
    map: str
    revision: int
    version: str
    by: str
    at: datetime
    reason: str
    body: dict[str, Any] | None = None


class RevisionList(BaseModel):
    map: str
    running_revision: int | None
    origin: str | None
    versions: list[Revision]


class PreviewRequest(BaseModel):
    """A sample record read on one side, and the map (the running one, or a draft) to send it through."""

    model_config = ConfigDict(extra="forbid")
    direction: Literal["to_fno", "to_dataverse"]
    record: dict[str, Any] = Field(description="the source record: F&O field or Dataverse column -> value")
    definition: TableMap | None = Field(None, description="a draft of the map to preview instead of the running one")


class Preview(BaseModel):
    map: str
    direction: Literal["to_fno", "to_dataverse"]
    values: dict[str, Any] = Field(description="what would be written; a lookup as {map, side, key}")


# -- initial sync and reconciliation runs --------------------------------------------------------------------
class RunView(_Open):
    id: str
    kind: str
    status: str
    dry_run: bool
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    message: str | None = None
    totals: dict[str, int]
    maps: list[dict[str, Any]] | dict[str, Any]


class RunList(BaseModel):
    runs: list[RunView]


class DriftItem(_Open):
    map: str
    key: str
    kind: str
    columns: list[str]
    detail: str | None = None


class DriftList(BaseModel):
    items: list[DriftItem]


# -- deployment --------------------------------------------------------------------------------------------
class DeployItem(BaseModel):
    kind: str
    name: str
    status: Literal["created", "updated", "unchanged", "deleted", "failed"]
    detail: str


class DeployReport(BaseModel):
    ok: bool
    counts: dict[str, int]
    items: list[DeployItem]


# -- requests ---------------------------------------------------------------------------------------------
class BulkAction(BaseModel):
    """Which open entries a bulk resubmit or discard takes: `ids`, else every open entry of `map` and
    `category` (none of them: every open entry), newest first, at most `limit`."""

    model_config = ConfigDict(extra="forbid")
    map: str | None = None
    category: Category | None = None
    ids: list[str] | None = Field(None, max_length=BULK_LIMIT)
    limit: int = Field(BULK_LIMIT, ge=1, le=BULK_LIMIT)



# -- metrics and alerts ---------------------------------------------------------------------------------------
class AlertRuleList(BaseModel):
    rules: list[AlertRule]


class AlertList(BaseModel):
    """Every alert (a rule and a subject: a map, a side or `*`) with its state."""

    alerts: list[AlertState]


class AlertHistory(BaseModel):
    """Firings and resolutions, newest first."""

    entries: list[HistoryEntry]
