"""What both simulators count for tests and the bench, and their outage switch (not part of either real
service): requests by kind, per entity set and per caller, committed writes per record, and a switch
that makes every data request answer 503 with Retry-After. Each simulator supplies how it names an
entity set from a request path and how it words its 503 (devstack/dataverse/stats.py, devstack/fno/stats.py).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

REQUEST_KEYS = ("total", "reads", "writes", "batches", "batch_operations", "batch_reads", "batch_writes",
                "throttled_429", "unavailable_503")


def kind_of(method: str) -> str:
    return "reads" if method.upper() == "GET" else "writes"


class Stats:
    """Counters since the last reset. Single-threaded (a simulator serves on one event loop).
    `entity_set_of` names the entity set of a request path; `writes_by` is the snapshot's name for the
    writes per operation (each simulator keeps its documented field)."""

    def __init__(self, entity_set_of: Callable[[str], str], writes_by: str) -> None:
        self.entity_set_of = entity_set_of
        self.writes_by = writes_by
        self.reset()

    def reset(self) -> None:
        self.since = time.time()
        self.requests: Counter[str] = Counter()
        self.status: Counter[str] = Counter()
        self.sets: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.callers: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.writes: Counter[str] = Counter()
        self.rows: defaultdict[str, Counter[str]] = defaultdict(Counter)

    @staticmethod
    def _outcome(counters: Counter[str], status: int, prefix: str = "") -> None:
        if status == 429:
            counters[prefix + "throttled_429"] += 1
        elif status == 503:
            counters[prefix + "unavailable_503"] += 1

    def request(self, method: str, path: str, status: int, caller: str) -> None:
        """One HTTP request to the data API (a `$batch` is one request)."""
        entity_set = self.entity_set_of(path)
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
        """One operation inside a `$batch` (in a changeset or not)."""
        entity_set = self.entity_set_of(path)
        kind = kind_of(method)
        self.requests["batch_operations"] += 1
        self.requests["batch_" + kind] += 1
        self.sets[entity_set]["batch_" + kind] += 1
        self._outcome(self.sets[entity_set], status, "batch_")
        self.callers[caller]["batch_operations"] += 1

    def wrote(self, entity_set: str, record: str, operation: str) -> None:
        """A committed Create/Update/Delete of one record."""
        self.writes["total"] += 1
        self.writes[operation] += 1
        self.sets[entity_set]["rows_written"] += 1
        self.rows[entity_set][record] += 1

    def snapshot(self, *, records: bool = True) -> dict[str, Any]:
        counts = [n for per_set in self.rows.values() for n in per_set.values()]
        out: dict[str, Any] = {
            "since": datetime.fromtimestamp(self.since, UTC).isoformat().replace("+00:00", "Z"),
            "seconds": round(time.time() - self.since, 3),
            "requests": {k: self.requests.get(k, 0) for k in REQUEST_KEYS},
            "status": dict(sorted(self.status.items())),
            "entity_sets": {name: dict(c) for name, c in sorted(self.sets.items())},
            "callers": {name: dict(c) for name, c in sorted(self.callers.items())},
            "writes": {
                "total": self.writes.get("total", 0),
                self.writes_by: {m: self.writes[m] for m in ("Create", "Update", "Delete") if self.writes.get(m)},
                "records": len(counts),
                "max_per_record": max(counts, default=0),
                "records_written_more_than_once": sum(1 for n in counts if n > 1),
            },
        }
        if records:
            out["record_writes"] = {name: dict(per_set) for name, per_set in sorted(self.rows.items())}
        return out


class Outage:
    """While on, every data request answers 503 with Retry-After; the simulator's admin routes keep working.
    `error(retry_after)` builds the simulator's own 503 error."""

    def __init__(self, error: Callable[[int], Exception]) -> None:
        self._error = error
        self.until: float | None = None  # monotonic deadline; math.inf = until turned off
        self.retry_after = 10

    def start(self, seconds: float | None, retry_after: int | None) -> None:
        self.until = math.inf if seconds is None else time.monotonic() + seconds
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

    def error(self) -> Exception:
        return self._error(self.retry_after)


def outage_request(body: Any) -> tuple[float | None, int | None]:
    """`{"seconds": 120, "retryAfter": 10}` (both optional: no seconds = until DELETE) -> (seconds, retry after).
    Raises ValueError with the message for the problem body."""
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
