"""Timer triggers against a clock the test moves: fire when due, never early, past_due when late."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from devstack.host.indexing import index_app
from devstack.host.invocation import Invoker
from devstack.host.outputs import OutputSender
from devstack.host.timers import ManualClock, TimerRunner
from tests.apps import timer_app

START = datetime(2026, 11, 21, 8, 0, 3, tzinfo=UTC)  # Saturday


async def _until(predicate, limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
async def runners():
    import importlib

    app = importlib.reload(timer_app)  # a fresh app instance: get_functions() may run once per app
    clock = ManualClock(START)
    invoker = Invoker(OutputSender(), ThreadPoolExecutor(2))
    started = {s.name: TimerRunner(s, invoker, clock) for s in index_app(app.app)}
    for runner in started.values():
        runner.start()
    yield clock, started, app.FIRED
    for runner in started.values():
        await runner.stop()
    invoker.executor.shutdown()


async def test_run_on_startup_fires_once_at_start(runners) -> None:
    _, started, fired = runners
    await _until(lambda: ("weekday_morning", False) in fired)
    assert [f for f in fired if f[0] == "weekday_morning"] == [("weekday_morning", False)]
    assert started["weekday_morning"].next_due == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


async def test_six_field_expression_fires_when_due_and_not_before(runners) -> None:
    clock, started, fired = runners
    await _until(lambda: started["every_ten_seconds"].next_due is not None)
    assert started["every_ten_seconds"].next_due == datetime(2026, 11, 21, 8, 0, 10, tzinfo=UTC)
    await clock.advance(timedelta(seconds=6))  # 08:00:09: not yet
    await asyncio.sleep(0.05)
    assert ("every_ten_seconds", False) not in fired
    await clock.advance(timedelta(seconds=1))  # 08:00:10: due
    await _until(lambda: fired.count(("every_ten_seconds", False)) == 1)
    await _until(lambda: started["every_ten_seconds"].next_due == datetime(2026, 11, 21, 8, 0, 20, tzinfo=UTC))
    await clock.advance(timedelta(seconds=10))
    await _until(lambda: fired.count(("every_ten_seconds", False)) == 2)


async def test_a_late_occurrence_is_past_due_and_missed_ones_are_skipped(runners) -> None:
    clock, started, fired = runners
    await _until(lambda: started["every_ten_seconds"].next_due is not None)
    await clock.advance(timedelta(minutes=1))  # 08:01:03, six occurrences missed
    await _until(lambda: ("every_ten_seconds", True) in fired)
    await _until(lambda: started["every_ten_seconds"].next_due == datetime(2026, 11, 21, 8, 1, 10, tzinfo=UTC))
    assert [f for f in fired if f[0] == "every_ten_seconds"] == [("every_ten_seconds", True)]


async def test_weekday_schedule_skips_the_weekend(runners) -> None:
    clock, _, fired = runners
    await _until(lambda: ("weekday_morning", False) in fired)
    await clock.advance(timedelta(days=1))  # Sunday 08:00:03
    await asyncio.sleep(0.05)
    assert fired.count(("weekday_morning", False)) == 1
    await clock.advance(timedelta(days=1, hours=1, minutes=29, seconds=57))  # Monday 09:30:00
    await _until(lambda: fired.count(("weekday_morning", False)) == 2)
