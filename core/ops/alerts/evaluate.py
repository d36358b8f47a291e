"""Rule evaluation, pure: what each rule reads from the figures, and whether an alert fires, holds or resolves.

An alert is a rule and a subject: the map (figures of a map), the side (throttling) or `*` (the engine).
Its state is explicit (`ok` / `firing`); only a change of state does anything (history, notification,
pause or resume), so evaluating twice, or on several instances at once, sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from core.ops.alerts.rules import AlertRule
from core.ops.meter import direction_of
from core.ops.metrics import MapFigures, Metrics
from core.store.errors import OpenError

AlertStatus = Literal["ok", "firing"]
Change = Literal["fired", "resolved"]
ENGINE = "*"


class AlertState(BaseModel):
    rule: str
    subject: str
    state: AlertStatus
    since: datetime
    value: float | None
    threshold: float
    condition: str
    last_notified_at: datetime | None = None
    notifications: dict[str, str] = Field(default_factory=dict, description="per channel, the last notification")
    paused_map: bool = Field(False, description="this alert paused its map (and resumes it if the rule says so)")
    etag: str | None = Field(None, exclude=True)


def readings(rule: AlertRule, metrics: Metrics, open_errors: Iterable[OpenError],
             now: datetime) -> dict[str, float | None]:
    """The rule's figure per subject (`metrics` are over the rule's window)."""
    scope = rule.scope
    if rule.metric == "deployment_failed":
        return {ENGINE: 1.0 if metrics.deployment.status == "failed" else 0.0}
    if rule.metric == "throttled_per_min":
        sides = {"to_fno": ["fno"], "to_dataverse": ["dataverse"], None: ["dataverse", "fno"]}[scope.direction]
        return {s.side: s.throttled_per_min for s in metrics.sides if s.side in sides}
    rows: dict[str, list[MapFigures]] = {}
    for row in metrics.maps:
        if (scope.map in (None, row.map)) and scope.direction in (None, row.direction):
            rows.setdefault(row.map, []).append(row)
    if rule.metric == "errors":
        since = now - timedelta(minutes=rule.window_minutes)
        errors = [e for e in open_errors if e.first_at >= since and (rule.category in (None, e.category))
                  and scope.direction in (None, direction_of(e.source))]
        return {name: float(sum(1 for e in errors if e.map == name)) for name in rows}
    return {name: _figure(rule, figures) for name, figures in rows.items()}


def _figure(rule: AlertRule, rows: list[MapFigures]) -> float | None:
    """One map's figure over the directions in scope: counts add up, ages and lags take the worst."""
    metric = rule.metric
    if metric == "error_rate_pct":
        applied = sum(r.applied for r in rows)
        failed = sum(r.failed for r in rows)
        return round(100 * failed / (applied + failed), 2) if applied + failed else None
    if metric == "parked_records":
        return float(sum(r.parked_records for r in rows))
    if metric == "dead_letters":
        return float(sum(r.open_errors for r in rows))
    if metric == "applied_per_s":
        return round(sum(r.applied_per_s for r in rows), 3)
    values = [v for v in (getattr(r, metric) for r in rows) if v is not None]
    return max(values) if values else None


def change(rule: AlertRule, state: AlertState | None, value: float | None) -> Change | None:
    """What a new reading does to an alert: fire it, resolve it, or nothing (a firing alert stays one)."""
    firing = state is not None and state.state == "firing"
    breached = rule.enabled and rule.breached(value)
    if breached and not firing:
        return "fired"
    if firing and not breached:
        return "resolved"
    return None


def notify_due(rule: AlertRule, state: AlertState | None, now: datetime) -> bool:
    """A firing is told unless the rule's cool-down since the last notification of this alert is still on."""
    if not rule.notify:
        return False
    last = state.last_notified_at if state is not None else None
    return last is None or now - last >= timedelta(minutes=rule.cooldown_minutes)
