"""What this instance applied, counted per minute, map and direction, and written to Table Storage now and then.

Every outcome of a change passes through the activity log (live apply, catch-up, initial sync); the meter
watches what is recorded there, so it counts without a read or a write of its own per change. Each instance
keeps the current minutes in memory and writes them (one row per minute, map and direction: its running
totals for that minute) at most every METRICS_FLUSH_SECONDS; the metrics (core.ops.metrics) add up the rows
of every instance over a window. Lag is kept as a histogram with fixed bounds, so percentiles over many
instances and minutes are one sum away (each is an estimate within its bucket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from core.sync.domain import ActivityEntry

log = logging.getLogger(__name__)

Direction = Literal["to_dataverse", "to_fno"]
DIRECTIONS: tuple[Direction, ...] = ("to_dataverse", "to_fno")
# Upper bounds (seconds) of the lag buckets: fine where people look (seconds), coarse past an hour.
LAG_BOUNDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60,
                                 90, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400, 28800,
                                 86400)
_T = TypeVar("_T", float, datetime)
_KEEP = timedelta(minutes=3)  # a flushed minute stays in memory this long (late entries of it still count)


def direction_of(source: str) -> Direction:
    """A change from Dataverse goes to F&O, and the other way round."""
    return "to_fno" if source == "dataverse" else "to_dataverse"


def minute_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H%M")


@dataclass
class Tally:
    """One map and direction's counts in one minute (of one instance, or summed over several)."""

    applied: int = 0
    failed: int = 0
    skipped: int = 0
    parked: int = 0
    retrying: int = 0
    lag: list[int] = field(default_factory=lambda: [0] * (len(LAG_BOUNDS) + 1))
    lag_sum: float = 0.0
    wait_max: float | None = None  # the longest a change applied in this minute waited on the queue (s)
    last_applied_at: datetime | None = None

    def add(self, other: Tally) -> None:
        self.applied += other.applied
        self.failed += other.failed
        self.skipped += other.skipped
        self.parked += other.parked
        self.retrying += other.retrying
        self.lag = [a + b for a, b in zip(self.lag, other.lag, strict=True)]
        self.lag_sum += other.lag_sum
        self.wait_max = _max(self.wait_max, other.wait_max)
        self.last_applied_at = _max(self.last_applied_at, other.last_applied_at)

    def count_lag(self, seconds: float) -> None:
        self.lag[bisect_left(LAG_BOUNDS, max(0.0, seconds))] += 1
        self.lag_sum += max(0.0, seconds)

    def lag_quantile(self, share: float) -> float | None:
        """The lag under which `share` of the applied changes fell, interpolated inside its bucket."""
        total = sum(self.lag)
        if not total:
            return None
        rank = share * total
        seen = 0
        for index, count in enumerate(self.lag):
            if count and seen + count >= rank:
                if index == len(LAG_BOUNDS):
                    return LAG_BOUNDS[-1]  # past the last bound: "at least a day" is all that is known
                low = LAG_BOUNDS[index - 1] if index > 0 else 0.0
                return round(low + (LAG_BOUNDS[index] - low) * max(0.0, rank - seen) / count, 3)
            seen += count
        return None


def _max(a: _T | None, b: _T | None) -> _T | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


@dataclass(frozen=True)
class MinuteRow:
    """What an instance writes: its totals of one minute for one map and direction (or one side's throttling:
    map `*`, direction = the side)."""

    minute: str
    instance: str
    map: str
    direction: str
    tally: Tally
    throttled: int = 0


class MinuteSink(Protocol):
    async def write(self, rows: list[MinuteRow]) -> None: ...


class OutcomeCounter(Protocol):
    """Where the same counts go as OpenTelemetry metrics (core.ops.telemetry); optional."""

    def outcome(self, map: str, direction: Direction, outcome: str, lag_seconds: float | None) -> None: ...

    def throttled(self, side: str, count: int) -> None: ...

    def waited(self, map: str, seconds: float) -> None: ...


class OtelOutcomes:
    """OutcomeCounter over the OpenTelemetry instruments of core.ops.telemetry (exported where it is set up)."""

    def __init__(self, instruments: Any) -> None:
        self.i = instruments

    def outcome(self, map: str, direction: Direction, outcome: str, lag_seconds: float | None) -> None:
        self.i.changes.add(1, {"map": map, "direction": direction, "outcome": outcome})
        if lag_seconds is not None:
            self.i.lag.record(lag_seconds, {"map": map, "direction": direction})

    def throttled(self, side: str, count: int) -> None:
        self.i.throttled.add(count, {"side": side})

    def waited(self, map: str, seconds: float) -> None:
        self.i.queue_wait.record(seconds, {"map": map})


def instance_id() -> str:
    """This instance in the rows it writes: Azure's instance id, else host and process."""
    own = os.environ.get("WEBSITE_INSTANCE_ID") or f"{os.uname().nodename}-{os.getpid()}"
    return f"{own[:40]}-{uuid.uuid4().hex[:6]}"  # a restarted process writes rows of its own


class Meter:
    def __init__(self, sink: MinuteSink, *, flush_seconds: float = 10.0, instance: str | None = None,
                 throttles: dict[str, Callable[[], int]] | None = None, otel: OutcomeCounter | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.sink = sink
        self.flush_seconds = flush_seconds
        self.instance = instance or instance_id()
        self.throttles = throttles or {}  # side -> the client's running count of 429s
        self.otel = otel
        self.clock = clock
        self._tallies: dict[tuple[str, str, str], Tally] = {}  # (minute, map, direction)
        self._throttled: dict[tuple[str, str], int] = {}  # (minute, side)
        self._throttle_seen = {side: 0 for side in self.throttles}
        self._dirty: set[tuple[str, str, str]] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    def _tally(self, at: datetime, map_name: str, direction: str) -> Tally:
        key = (minute_of(at), map_name, direction)
        self._dirty.add(key)
        return self._tallies.setdefault(key, Tally())

    def observe(self, entries: Iterable[ActivityEntry]) -> None:
        """Count what the activity log was given (called by it; never raises into the caller's work)."""
        for entry in entries:
            direction = direction_of(entry.source)
            tally = self._tally(entry.at, entry.map, direction)
            lag = None
            if entry.outcome == "applied":
                tally.applied += 1
                tally.last_applied_at = _max(tally.last_applied_at, entry.at)
                if entry.latency_ms is not None:
                    lag = entry.latency_ms / 1000
                    tally.count_lag(lag)
            elif entry.outcome == "failed":
                tally.failed += 1
            elif entry.outcome == "parked":
                tally.parked += 1
            elif entry.outcome == "retrying":
                tally.retrying += 1
            else:
                tally.skipped += 1
            if self.otel is not None:
                self.otel.outcome(entry.map, direction, entry.outcome, lag)
        self.schedule()

    def waited(self, map_name: str, source: str, seconds: float) -> None:
        """A change was taken off the queue after waiting `seconds` there (the queue's backlog age)."""
        tally = self._tally(self.clock(), map_name, direction_of(source))
        tally.wait_max = _max(tally.wait_max, max(0.0, seconds))
        if self.otel is not None:
            self.otel.waited(map_name, max(0.0, seconds))

    def _take_throttles(self, minute: str) -> None:
        for side, read in self.throttles.items():
            now = read()
            delta = now - self._throttle_seen.get(side, 0)
            self._throttle_seen[side] = now
            if delta > 0:
                self._throttled[(minute, side)] = self._throttled.get((minute, side), 0) + delta
                self._dirty.add((minute, "*", side))
                if self.otel is not None:
                    self.otel.throttled(side, delta)

    def schedule(self) -> None:
        """Write the counts within flush_seconds (one pending write at a time, in the background)."""
        if self._flush_task is not None and not self._flush_task.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next flush() call writes them
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        try:
            await self.flush()
        except Exception as error:  # counts must never fail the work they count; they stay for the next try
            log.warning("metrics: could not write this instance's counts (%s); trying again later",
                        type(error).__name__)
            self.schedule()

    async def flush(self) -> None:
        """Write every minute that changed since the last write (its totals so far) and forget old minutes."""
        async with self._flush_lock:
            now = self.clock()
            self._take_throttles(minute_of(now))
            dirty, self._dirty = self._dirty, set()
            rows = []
            for minute, map_name, direction in sorted(dirty):
                if map_name == "*":
                    rows.append(MinuteRow(minute, self.instance, "*", direction, Tally(),
                                          throttled=self._throttled.get((minute, direction), 0)))
                else:
                    rows.append(MinuteRow(minute, self.instance, map_name, direction,
                                          self._tallies[(minute, map_name, direction)]))
            try:
                if rows:
                    await self.sink.write(rows)
            except BaseException:
                self._dirty |= dirty
                raise
            oldest = minute_of(now - _KEEP)
            self._tallies = {k: v for k, v in self._tallies.items() if k[0] >= oldest or k in self._dirty}
            self._throttled = {k: v for k, v in self._throttled.items() if k[0] >= oldest}

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
        await self.flush()
