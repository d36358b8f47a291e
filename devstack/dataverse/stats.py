"""Test and bench instrumentation, not part of Dataverse: what the simulator served (requests by kind,
per entity set, per caller; committed writes per row) and an outage switch (503 to every Web API request).

Served on `/_sim/stats` and `/_sim/outage` (app.py); README "Stats and outage" describes the JSON.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from devstack.dataverse.errors import DataverseError
from devstack.dataverse.records import Event, Pipeline
from devstack.dataverse.schema import Table
from devstack.dataverse.store import Database

# Dataverse has no documented code for "service unavailable" answers; the simulator uses the generic
# platform failure code it also uses for its 500s, in the documented Web API error shape.
UNAVAILABLE_CODE = "0x80040216"


def entity_set_of(path: str) -> str:
    """`accounts(…)/x` -> `accounts`; `$batch`, `$metadata`, `EntityDefinitions`, `WhoAmI`; `` for the root."""
    head = path.lstrip("/").split("?", 1)[0].split("/", 1)[0]
    return head.split("(", 1)[0]


def kind_of(method: str) -> str:
    return "reads" if method.upper() == "GET" else "writes"


class Stats:
    """Counters since the last reset. Single-threaded (the simulator runs on one event loop)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.requests: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.sets: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.callers: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.writes: Counter[str] = Counter()
        self.rows: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def _outcome(self, counters: Counter[str], status: int, prefix: str = "") -> None:
        if status == 429:
            counters[prefix + "throttled_429"] += 1
        elif status == 503:
            counters[prefix + "unavailable_503"] += 1

    def request(self, method: str, path: str, status: int, caller: str) -> None:
        """One HTTP request to the Web API (a `$batch` is one request)."""
        entity_set = entity_set_of(path)
        kind = "batches" if entity_set == "$batch" and method.upper() == "POST" else kind_of(method)
        self.requests["total"] += 1
        self.requests[kind] += 1
        self._outcome(self.requests, status)
        self.status[str(status)] += 1
        per_set = self.sets[entity_set]
        per_set["requests" if kind == "batches" else kind] += 1
        self._outcome(per_set, status)
        self.callers[caller]["requests"] += 1

    def operation(self, method: str, path: str, status: int, caller: str) -> None:
        """One operation inside a `$batch` (changeset or not)."""
        entity_set = entity_set_of(path)
        kind = kind_of(method)
        self.requests["batch_operations"] += 1
        self.requests["batch_" + kind] += 1
        self.sets[entity_set]["batch_" + kind] += 1
        self._outcome(self.sets[entity_set], status, "batch_")
        self.callers[caller]["batch_operations"] += 1

    def wrote(self, table: Table, row_id: str, message: str) -> None:
        """A committed Create/Update/Delete of one row (UpsertMultiple: one per target)."""
        self.writes["total"] += 1
        self.writes[message] += 1
        self.sets[table.entity_set]["rows_written"] += 1
        self.rows[table.entity_set][row_id] += 1

    def snapshot(self, *, records: bool = True) -> dict[str, Any]:
        counts = [n for per_set in self.rows.values() for n in per_set.values()]
        keys = ("total", "reads", "writes", "batches", "batch_operations", "batch_reads", "batch_writes",
                "throttled_429", "unavailable_503")
        out: dict[str, Any] = {
            "since": datetime.fromtimestamp(self.since, UTC).isoformat().replace("+00:00", "Z"),
            "seconds": round(time.time() - self.since, 3),
            "requests": {k: self.requests.get(k, 0) for k in keys},
            "status": dict(sorted(self.status.items())),
            "entity_sets": {name: dict(c) for name, c in sorted(self.sets.items())},
            "callers": {name: dict(c) for name, c in sorted(self.callers.items())},
            "writes": {
                "total": self.writes.get("total", 0),
                "by_message": {m: self.writes[m] for m in ("Create", "Update", "Delete") if self.writes.get(m)},
                "records": len(counts),
                "max_per_record": max(counts, default=0),
                "records_written_more_than_once": sum(1 for n in counts if n > 1),
            },
        }
        if records:
            out["record_writes"] = {name: dict(per_set) for name, per_set in sorted(self.rows.items())}
        return out


class CountingPipeline:
    """The event pipeline with a tap: every committed row write is counted (after the unit commits, so a
    rolled-back changeset counts nothing). System tables are left out."""

    def __init__(self, inner: Pipeline, stats: Stats) -> None:
        self.inner = inner
        self.stats = stats

    def validate(self, table: Table, row: dict[str, Any]) -> None:
        self.inner.validate(table, row)

    async def run_sync(self, stage: int, event: Event) -> None:
        await self.inner.run_sync(stage, event)

    def queue_async(self, event: Event) -> None:
        if not event.table.system:
            Database.after_commit(lambda: self.stats.wrote(event.table, event.row_id, event.message))
        self.inner.queue_async(event)


class Outage:
    """While on, every Web API request answers 503 with Retry-After; `/_sim/*` keeps working."""

    def __init__(self) -> None:
        self.until: float | None = None  # monotonic deadline; math.inf = until turned off
        self.retry_after = 10
        self.started: float | None = None

    def start(self, seconds: float | None, retry_after: int | None) -> None:
        now = time.monotonic()
        self.started = now
        self.until = math.inf if seconds is None else now + seconds
        self.retry_after = retry_after if retry_after is not None else 10

    def stop(self) -> None:
        self.until = None

    def active(self) -> bool:
        if self.until is None:
            return False
        if time.monotonic() >= self.until:
            self.until = None
            return False
        return True

    def state(self) -> dict[str, Any]:
        active = self.active()
        remaining = None
        if active and self.until is not None and self.until != math.inf:
            remaining = round(self.until - time.monotonic(), 3)
        return {"active": active, "remaining_seconds": remaining, "retry_after": self.retry_after}

    def error(self) -> DataverseError:
        return DataverseError(
            503, UNAVAILABLE_CODE,
            f"The service is temporarily unavailable (simulated outage). Retry after {self.retry_after} seconds.",
            headers={"Retry-After": str(self.retry_after)},
        )


def outage_request(body: Any) -> tuple[float | None, int | None]:
    """`{"seconds": 120, "retryAfter": 10}` (both optional: no seconds = until DELETE) -> (seconds, retry after).
    Raises ValueError with a message for the problem body."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError("The body must be a JSON object, e.g. {\"seconds\": 120}.")
    seconds = body.get("seconds")
    retry_after = body.get("retryAfter")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float | Decimal)
                                or seconds <= 0):
        raise ValueError("'seconds' must be a positive number (or left out: until DELETE).")
    if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int)
                                    or retry_after < 0):
        raise ValueError("'retryAfter' must be a non-negative integer number of seconds.")
    return (float(seconds) if seconds is not None else None), retry_after
