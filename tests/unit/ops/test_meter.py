"""The per-minute counts: what an activity entry adds, the lag histogram's percentiles, what a flush writes
(running totals per minute, throttling as a delta per side), and the figures added up over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.ops.meter import LAG_BOUNDS, Meter, MinuteRow, Tally, direction_of
from core.ops.metrics import collect, map_directions, prometheus_text
from core.store.errors import OpenError
from core.store.metrics import Deployment
from core.sync.domain import ActivityEntry

NOW = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)


def entry(outcome: str = "applied", *, source: str = "fno", lag_s: float | None = 2.0, at: datetime = NOW,
          map_name: str = "customers") -> ActivityEntry:
    return ActivityEntry(map=map_name, key="USMF|1", source=source, operation="update", outcome=outcome,
                         reason="", event_id="e", message_id="m", at=at,
                         latency_ms=None if lag_s is None else lag_s * 1000)


class Sink:
    def __init__(self) -> None:
        self.rows: list[MinuteRow] = []

    async def write(self, rows: list[MinuteRow]) -> None:
        self.rows.extend(rows)


def test_a_change_from_dataverse_goes_to_fno() -> None:
    assert direction_of("dataverse") == "to_fno" and direction_of("fno") == "to_dataverse"


def test_lag_percentiles_fall_in_the_right_bucket() -> None:
    tally = Tally()
    for seconds in [1.2] * 90 + [40.0] * 10:
        tally.count_lag(seconds)
    assert 1.0 < (tally.lag_quantile(0.5) or 0) <= 1.5
    assert 30.0 < (tally.lag_quantile(0.95) or 0) <= 45.0
    assert Tally().lag_quantile(0.5) is None
    beyond = Tally()
    beyond.count_lag(LAG_BOUNDS[-1] * 2)
    assert beyond.lag_quantile(0.5) == LAG_BOUNDS[-1]  # at least that


async def test_a_flush_writes_each_minutes_running_totals_and_the_throttling_delta() -> None:
    sink, throttled = Sink(), {"fno": 0}
    meter = Meter(sink, instance="i1", clock=lambda: NOW, throttles={"fno": lambda: throttled["fno"]})
    meter.observe([entry(), entry(lag_s=4.0), entry("failed", lag_s=None), entry("skipped", lag_s=None),
                   entry(source="dataverse", lag_s=0.3), entry(at=NOW - timedelta(minutes=1))])
    meter.waited("customers", "fno", 7.5)
    throttled["fno"] = 3
    await meter.flush()
    rows = {(r.minute, r.map, r.direction): r for r in sink.rows}
    now_fno = rows[("202612041200", "customers", "to_dataverse")].tally
    assert (now_fno.applied, now_fno.failed, now_fno.skipped, now_fno.wait_max) == (2, 1, 1, 7.5)
    assert rows[("202612041159", "customers", "to_dataverse")].tally.applied == 1
    assert rows[("202612041200", "customers", "to_fno")].tally.applied == 1
    assert rows[("202612041200", "*", "fno")].throttled == 3

    sink.rows.clear()
    meter.observe([entry()])
    throttled["fno"] = 4
    await meter.flush()  # only what changed, as running totals of the minute
    assert {(r.map, r.direction): (r.tally.applied, r.throttled) for r in sink.rows} == {
        ("customers", "to_dataverse"): (3, 0), ("*", "fno"): (0, 4)}


async def test_a_failed_write_keeps_the_counts_for_the_next_one() -> None:
    class Broken(Sink):
        fail = True

        async def write(self, rows: list[MinuteRow]) -> None:
            if self.fail:
                raise ConnectionError("down")
            await super().write(rows)

    sink = Broken()
    meter = Meter(sink, instance="i1", clock=lambda: NOW)
    meter.observe([entry()])
    with pytest.raises(ConnectionError):
        await meter.flush()
    sink.fail = False
    await meter.flush()
    assert [r.tally.applied for r in sink.rows] == [1]


class Minutes:
    def __init__(self, tallies: dict[tuple[str, str], Tally], throttled: dict[str, int]) -> None:
        self.tallies, self.throttled = tallies, throttled

    async def window(self, since: datetime, until: datetime) -> tuple[dict[tuple[str, str], Tally], dict[str, int]]:
        return self.tallies, self.throttled

    async def deployment(self) -> Deployment:
        return Deployment(status="failed", detail="x")


class Errors:
    async def open_summary(self) -> list[OpenError]:
        return [OpenError("customers", "fno", "application", NOW - timedelta(minutes=2)),
                OpenError("customers", "fno", "application", NOW - timedelta(hours=2)),
                OpenError("customers", "dataverse", "system", NOW)]


class Parked:
    async def by_source(self, map_name: str) -> dict[str, tuple[int, datetime | None]]:
        return {"dataverse": (2, NOW - timedelta(seconds=90))} if map_name == "customers" else {}


async def test_the_figures_over_a_window() -> None:
    tally = Tally(applied=30, failed=10)
    for _ in range(30):
        tally.count_lag(1.2)
    tally.wait_max = 12.0
    figures = await collect(map_directions([("customers", True, True), ("vendors", True, False)]),
                            minutes=Minutes({("customers", "to_dataverse"): tally}, {"fno": 30}), errors=Errors(),
                            parked=Parked(), modes={"customers": "paused"}, window=timedelta(minutes=15), now=NOW)
    to_dv = figures.row("customers", "to_dataverse")
    to_fno = figures.row("customers", "to_fno")
    assert to_dv is not None and to_fno is not None
    assert (to_dv.applied, to_dv.failed, to_dv.error_rate_pct, to_dv.open_errors, to_dv.new_errors) == (
        30, 10, 25.0, 2, 1)
    assert to_dv.applied_per_s == round(30 / 900, 3) and to_dv.mode == "paused"
    assert 1.0 < (to_dv.lag_p50_s or 0) <= 1.5 and to_dv.backlog_age_s == 12.0
    assert (to_fno.parked_records, to_fno.oldest_parked_age_s, to_fno.backlog_age_s) == (2, 90.0, 90.0)
    assert (to_fno.open_errors, to_fno.new_errors, to_fno.error_rate_pct) == (1, 1, None)
    assert figures.row("vendors", "to_fno") is None and figures.row("vendors", "to_dataverse") is not None
    assert [(s.side, s.throttled, s.throttled_per_min) for s in figures.sides] == [
        ("dataverse", 0, 0.0), ("fno", 30, 2.0)]
    assert figures.open_errors == 3 and figures.queue.depth is None and figures.deployment.status == "failed"

    from prometheus_client.parser import text_string_to_metric_families

    parsed: dict[str, Any] = {f.name: f for f in text_string_to_metric_families(
        prometheus_text(figures, [("lag", "customers", True)]).decode())}
    applied = {tuple(sorted(s.labels.items())): s.value for s in parsed["dualwrite_applied"].samples}
    assert applied[(("direction", "to_dataverse"), ("map", "customers"))] == 30
    assert [s.value for s in parsed["dualwrite_deployment_failed"].samples] == [1.0]
    assert [s.labels for s in parsed["dualwrite_alert_firing"].samples] == [{"rule": "lag", "subject": "customers"}]
