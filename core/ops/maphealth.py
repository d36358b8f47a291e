"""How each map is doing, in figures: mode, what waits (parked changes, open errors), what got through over the
last minutes (applied, failed, per minute) and how late (source change -> target write, p50/p95), for
`GET /api/manage/v1/health`.

The figures come from what the engine records (the activity log, the error log, the map modes); the changes
queue's depth is not among them (Service Bus reports it through its management API only), so what is still on
the queue shows as lag once it is applied.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from core.store.activity import ActivityEntry
from core.store.errors import ErrorEntry

WINDOW = timedelta(minutes=10)
_SAMPLE = 1000  # activity entries read per map and window: enough for the rates and percentiles


class ActivityReader(Protocol):
    async def query(self, *, map: str | None = None, since: datetime | None = None, until: datetime | None = None,
                    limit: int = 100) -> list[ActivityEntry]: ...


class ErrorReader(Protocol):
    async def list(self, *, map: str | None = None, status: str | None = "open", category: str | None = None,
                   limit: int = 100) -> list[ErrorEntry]: ...


class ModeViews(Protocol):
    async def views(self) -> list[dict[str, object]]: ...


class MapHealth(BaseModel):
    map: str
    mode: str
    parked_records: int
    open_errors: int
    applied: int
    failed: int
    applied_per_min: float
    lag_ms_p50: float | None
    lag_ms_p95: float | None
    last_applied_at: datetime | None
    sampled: bool  # more entries in the window than were read: the rates are at least what they say


class MapsHealth(BaseModel):
    window_minutes: float
    at: datetime
    maps: list[MapHealth]


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1], 1)


def summarise(name: str, mode: str, parked: int, open_errors: int, entries: Iterable[ActivityEntry], *,
              window: timedelta, sampled: bool) -> MapHealth:
    applied = [e for e in entries if e.outcome == "applied"]
    failed = sum(1 for e in entries if e.outcome == "failed")
    lags = sorted(e.latency_ms for e in applied if e.latency_ms is not None)
    return MapHealth(map=name, mode=mode, parked_records=parked, open_errors=open_errors, applied=len(applied),
                     failed=failed, applied_per_min=round(len(applied) / (window.total_seconds() / 60), 2),
                     lag_ms_p50=_percentile(lags, 0.5), lag_ms_p95=_percentile(lags, 0.95),
                     last_applied_at=max((e.at for e in applied), default=None), sampled=sampled)


async def maps_health(names: Iterable[str], *, modes: ModeViews, activity: ActivityReader, errors: ErrorReader,
                      window: timedelta = WINDOW, now: datetime | None = None) -> MapsHealth:
    now = now or datetime.now(UTC)
    views = {v["map"]: v for v in await modes.views()}
    open_by_map = Counter(e.map for e in await errors.list(status="open", limit=1000))
    names = list(names)
    # one activity query per map, all at once: a page asks this every few seconds
    windows = await asyncio.gather(*(activity.query(map=name, since=now - window, until=now, limit=_SAMPLE)
                                     for name in names))
    out = []
    for name, entries in zip(names, windows, strict=True):
        view: dict[str, Any] = dict(views.get(name, {}))
        parked = view.get("parked") or {}
        out.append(summarise(name, str(view.get("mode", "running")), int(parked.get("records", 0)),
                             open_by_map[name], entries, window=window, sampled=len(entries) >= _SAMPLE))
    return MapsHealth(window_minutes=window.total_seconds() / 60, at=now, maps=out)
