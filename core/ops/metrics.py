"""The engine's figures per map and direction over a window, for people (JSON), Prometheus (text) and alerts.

Counted continuously and cheaply: every instance's per-minute counts (core.ops.meter, table `metrics`) give
applied, failed, skipped, lag percentiles, the longest queue wait and the throttling per side; the error log
gives the open errors (and those that first failed inside the window); the parked table the parked records and
the oldest one's age. The changes queue's depth comes from Service Bus's management API
(core.store.queuedepth), which the emulators lack: there it is null with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from core.ops.meter import DIRECTIONS, Direction, Tally, direction_of
from core.store.errors import OpenError
from core.store.metrics import Deployment

DEFAULT_WINDOW = timedelta(minutes=15)
MAX_WINDOW = timedelta(hours=24)
SIDES = ("dataverse", "fno")


class MinuteReader(Protocol):
    async def window(self, since: datetime, until: datetime) -> tuple[dict[tuple[str, str], Tally], dict[str, int]]: ...

    async def deployment(self) -> Deployment: ...


class OpenErrors(Protocol):
    async def open_summary(self) -> list[OpenError]: ...


class Parked(Protocol):
    async def by_source(self, map_name: str) -> dict[str, tuple[int, datetime | None]]: ...


class MapFigures(BaseModel):
    map: str
    direction: Direction
    mode: str
    applied: int
    applied_per_s: float
    failed: int
    skipped: int
    error_rate_pct: float | None = Field(description="failed / (applied + failed) in the window, in percent")
    lag_p50_s: float | None = Field(description="source change -> applied, seconds (estimated within a bucket)")
    lag_p95_s: float | None
    queue_wait_max_s: float | None = Field(description="the longest a change applied in the window waited on "
                                                       "the queue")
    parked_records: int
    oldest_parked_age_s: float | None
    backlog_age_s: float | None = Field(description="the oldest waiting change's age: parked, or on the queue")
    open_errors: int
    new_errors: int = Field(description="open errors whose first failure is inside the window")
    last_applied_at: datetime | None


class SideFigures(BaseModel):
    side: str
    throttled: int = Field(description="429 answers in the window")
    throttled_per_min: float


class QueueFigures(BaseModel):
    depth: int | None
    note: str


class Metrics(BaseModel):
    at: datetime
    window_minutes: float
    maps: list[MapFigures]
    sides: list[SideFigures]
    open_errors: int
    queue: QueueFigures
    deployment: Deployment

    def row(self, map_name: str, direction: str) -> MapFigures | None:
        return next((m for m in self.maps if m.map == map_name and m.direction == direction), None)


QueueDepth = Callable[[], Awaitable[tuple[int | None, str]]]  # (active messages, what that is) or (None, why)


async def collect(directions: Mapping[str, Iterable[Direction]], *, minutes: MinuteReader, errors: OpenErrors,
                  parked: Parked, modes: Mapping[str, str], window: timedelta = DEFAULT_WINDOW,
                  queue_depth: QueueDepth | None = None, now: datetime | None = None) -> Metrics:
    """The figures of each map (`directions`: the directions each map syncs) over the last `window`."""
    now = now or datetime.now(UTC)
    since = now - window
    names = list(directions)
    (tallies, throttled), open_errors, parked_maps, deployment, (depth, note) = await asyncio.gather(
        minutes.window(since, now), errors.open_summary(), asyncio.gather(*(parked.by_source(n) for n in names)),
        minutes.deployment(), _depth(queue_depth))
    minutes_in_window = window.total_seconds() / 60
    rows = []
    for name, by_source in zip(names, parked_maps, strict=True):
        for direction in directions[name]:
            source = "dataverse" if direction == "to_fno" else "fno"
            t = tallies.get((name, direction), Tally())
            records, oldest = by_source.get(source, (0, None))
            mine = [e for e in open_errors if e.map == name and direction_of(e.source) == direction]
            parked_age = None if oldest is None else round((now - oldest).total_seconds(), 1)
            done = t.applied + t.failed
            rows.append(MapFigures(
                map=name, direction=direction, mode=modes.get(name, "running"), applied=t.applied,
                applied_per_s=round(t.applied / window.total_seconds(), 3), failed=t.failed, skipped=t.skipped,
                error_rate_pct=round(100 * t.failed / done, 2) if done else None,
                lag_p50_s=t.lag_quantile(0.5), lag_p95_s=t.lag_quantile(0.95),
                queue_wait_max_s=None if t.wait_max is None else round(t.wait_max, 3),
                parked_records=records, oldest_parked_age_s=parked_age,
                backlog_age_s=_max_or_none(parked_age, t.wait_max), open_errors=len(mine),
                new_errors=sum(1 for e in mine if e.first_at >= since),
                last_applied_at=t.last_applied_at))
    sides = [SideFigures(side=side, throttled=throttled.get(side, 0),
                         throttled_per_min=round(throttled.get(side, 0) / minutes_in_window, 2)) for side in SIDES]
    return Metrics(at=now, window_minutes=round(minutes_in_window, 3), maps=rows, sides=sides,
                   open_errors=len(open_errors), queue=QueueFigures(depth=depth, note=note), deployment=deployment)


async def _depth(reader: QueueDepth | None) -> tuple[int | None, str]:
    if reader is None:
        return None, "the queue's depth is not read here: what waits there shows as queue_wait_max_s once applied"
    return await reader()


def _max_or_none(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return round(max(values), 1) if values else None


def map_directions(maps: Iterable[tuple[str, bool, bool]]) -> dict[str, list[Direction]]:
    """(name, sends to Dataverse, sends to F&O) per map -> the directions it has figures for."""
    return {name: [d for d, on in zip(DIRECTIONS, (to_dv, to_fno), strict=True) if on]
            for name, to_dv, to_fno in maps}


# -- Prometheus text ------------------------------------------------------------------------------------
_PER_MAP: tuple[tuple[str, str, str], ...] = (
    ("applied_per_s", "dualwrite_applied_per_second", "Changes applied per second over the window"),
    ("error_rate_pct", "dualwrite_error_rate_percent", "Failed / (applied + failed) over the window, percent"),
    ("queue_wait_max_s", "dualwrite_queue_wait_max_seconds", "Longest queue wait of a change applied in the window"),
    ("parked_records", "dualwrite_parked_records", "Records with a change parked (map paused)"),
    ("backlog_age_s", "dualwrite_backlog_age_seconds", "Age of the oldest waiting change (parked or queued)"),
    ("open_errors", "dualwrite_open_errors", "Open entries in the error log"),
    ("new_errors", "dualwrite_new_errors", "Open errors whose first failure is inside the window"),
)


class _Figures(Collector):
    def __init__(self, metrics: Metrics, alerts: Iterable[tuple[str, str, bool]]) -> None:
        self.metrics = metrics
        self.alerts = list(alerts)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        m = self.metrics
        labels = ["map", "direction"]
        for attribute, name, text in _PER_MAP:
            family = GaugeMetricFamily(name, text, labels=labels)
            for row in m.maps:
                value = getattr(row, attribute)
                if value is not None:
                    family.add_metric([row.map, row.direction], float(value))
            yield family
        for name, text, attribute in (("dualwrite_applied", "Changes applied in the window", "applied"),
                                      ("dualwrite_failed", "Changes that failed in the window", "failed")):
            family = GaugeMetricFamily(name, text, labels=labels)
            for row in m.maps:
                family.add_metric([row.map, row.direction], float(getattr(row, attribute)))
            yield family
        lag = GaugeMetricFamily("dualwrite_lag_seconds", "Source change -> applied, over the window",
                                labels=[*labels, "quantile"])
        for row in m.maps:
            for quantile, value in (("0.5", row.lag_p50_s), ("0.95", row.lag_p95_s)):
                if value is not None:
                    lag.add_metric([row.map, row.direction, quantile], value)
        yield lag
        last = GaugeMetricFamily("dualwrite_last_applied_timestamp_seconds", "When the last change was applied",
                                 labels=labels)
        for row in m.maps:
            if row.last_applied_at is not None:
                last.add_metric([row.map, row.direction], row.last_applied_at.timestamp())
        yield last
        mode = GaugeMetricFamily("dualwrite_map_mode", "1 for the mode each map is in", labels=["map", "mode"])
        for name, row_mode in sorted({(r.map, r.mode) for r in m.maps}):
            mode.add_metric([name, row_mode], 1.0)
        yield mode
        throttled = GaugeMetricFamily("dualwrite_throttled_per_minute", "429 answers per minute over the window",
                                      labels=["side"])
        for side in m.sides:
            throttled.add_metric([side.side], side.throttled_per_min)
        yield throttled
        yield GaugeMetricFamily("dualwrite_open_errors_total", "Open entries in the error log, all maps",
                                value=float(m.open_errors))
        if m.queue.depth is not None:
            yield GaugeMetricFamily("dualwrite_queue_depth", "Active messages on the changes queue",
                                    value=float(m.queue.depth))
        yield GaugeMetricFamily("dualwrite_deployment_failed", "1 when the last deployment failed",
                                value=1.0 if m.deployment.status == "failed" else 0.0)
        firing = GaugeMetricFamily("dualwrite_alert_firing", "1 while an alert rule fires for a subject",
                                   labels=["rule", "subject"])
        for rule, subject, on in self.alerts:
            firing.add_metric([rule, subject], 1.0 if on else 0.0)
        yield firing
        yield GaugeMetricFamily("dualwrite_metrics_window_seconds", "The window the figures are over",
                                value=m.window_minutes * 60)


def prometheus_text(metrics: Metrics, alerts: Iterable[tuple[str, str, bool]] = ()) -> bytes:
    """The figures in Prometheus's text exposition format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(metrics, alerts))
    return generate_latest(registry)
