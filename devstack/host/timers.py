"""Timer triggers on their NCRONTAB (or TimeSpan) schedules, with a clock tests can drive.

As in the Functions host, invocations of one timer never overlap: the next occurrence is computed
after the previous invocation ends, and an invocation that starts late is `past_due`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.functions.timer import TimerRequest

from devstack.host.indexing import FunctionSpec, TimerTrigger
from devstack.host.invocation import InvocationFailed, Invoker

log = logging.getLogger("devstack.host")
PAST_DUE_AFTER = timedelta(seconds=1)


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        # Short steps, so a changed wall clock (suspend, NTP) is noticed: polling the clock is the point.
        while (remaining := (moment - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(remaining, 30.0))


class ManualClock:
    """A clock that moves only when told to; sleepers wake when it passes their moment."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, moment: datetime) -> None:
        async with self._moved:
            await self._moved.wait_for(lambda: self._now >= moment)

    async def advance(self, delta: timedelta) -> None:
        async with self._moved:
            self._now += delta
            self._moved.notify_all()
        # Let woken timers run their invocations before the caller looks.
        for _ in range(20):
            await asyncio.sleep(0)


class TimerRunner:
    def __init__(self, spec: FunctionSpec, invoker: Invoker, clock: Clock) -> None:
        assert isinstance(spec.trigger, TimerTrigger)
        self.spec = spec
        self.trigger: TimerTrigger = spec.trigger
        self.invoker = invoker
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self.next_due: datetime | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer:{self.spec.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last = self.clock.now()
        if self.trigger.run_on_startup:
            await self._fire(last, last)
        while True:
            # Occurrences missed while an invocation ran are skipped, not queued up.
            due = self.trigger.schedule.next_after(max(last, self.clock.now()))
            self.next_due = due
            if due is None:
                log.warning("timer %s: schedule %r never fires again", self.spec.name, self.trigger.schedule.expression)
                return
            await self.clock.sleep_until(due)
            await self._fire(due, self.clock.now())
            last = due

    async def _fire(self, due: datetime, now: datetime) -> None:
        request = TimerRequest(
            past_due=now - due > PAST_DUE_AFTER,
            schedule={"AdjustForDST": False},
            schedule_status={"Last": due.isoformat(), "Next": None, "LastUpdated": now.isoformat()},
        )
        with contextlib.suppress(InvocationFailed):  # logged by the invoker; the schedule goes on
            await self.invoker.invoke(self.spec, request, detail=f"due={due.isoformat()}")
