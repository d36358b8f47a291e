"""Per-map health figures (core.ops.maphealth) from the activity log, the error log and the map modes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.ops.maphealth import maps_health
from core.store.activity import ActivityEntry
from core.store.errors import ErrorEntry

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Activity:
    def __init__(self, entries: list[ActivityEntry]) -> None:
        self.entries = entries
        self.asked: list[dict[str, Any]] = []

    async def query(self, *, map: str | None = None, since: datetime | None = None, until: datetime | None = None,
                    limit: int = 100) -> list[ActivityEntry]:
        self.asked.append({"map": map, "since": since, "until": until})
        return [e for e in self.entries if e.map == map and since <= e.at <= until][:limit]  # type: ignore[operator]


class Errors:
    def __init__(self, maps: list[str]) -> None:
        self.maps = maps

    async def list(self, *, map: str | None = None, status: str | None = "open", category: str | None = None,
                   limit: int = 100) -> list[ErrorEntry]:
        return [ErrorEntry(id=f"e{n}", map=m, key="k", source="fno", operation="update", category="application",
                           text="no", attempts=1, change="{}", session_id="s", first_at=NOW, last_at=NOW)
                for n, m in enumerate(self.maps)]


class Modes:
    async def views(self) -> list[dict[str, object]]:
        return [{"map": "customers", "mode": "paused", "parked": {"records": 7, "changes": 30}}]


def entry(map: str, outcome: str, minutes_ago: float, latency: float | None = None) -> ActivityEntry:
    return ActivityEntry(map=map, key="k", source="fno", operation="update", outcome=outcome,  # type: ignore[arg-type]
                         reason="", latency_ms=latency, at=NOW - timedelta(minutes=minutes_ago))


async def test_figures_per_map_over_the_window() -> None:
    entries = [entry("customers", "applied", m, latency=100.0 * (m + 1)) for m in range(10)]
    entries += [entry("customers", "failed", 1), entry("customers", "parked", 2), entry("customers", "applied", 30, 9)]
    activity = Activity(entries)
    report = await maps_health(["customers", "vendors"], modes=Modes(), activity=activity,
                               errors=Errors(["customers", "customers", "vendors"]), now=NOW)
    customers, vendors = report.maps
    assert (customers.mode, customers.parked_records, customers.open_errors) == ("paused", 7, 2)
    assert (customers.applied, customers.failed, customers.applied_per_min) == (10, 1, 1.0)  # 30 min ago: outside
    assert customers.lag_ms_p50 == 550.0 and customers.lag_ms_p95 is not None and customers.lag_ms_p95 > 900
    assert customers.last_applied_at == NOW and not customers.sampled
    assert (vendors.mode, vendors.applied, vendors.lag_ms_p50, vendors.last_applied_at) == ("running", 0, None, None)
    assert vendors.open_errors == 1
    assert {a["since"] for a in activity.asked} == {NOW - timedelta(minutes=10)}
