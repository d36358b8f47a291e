"""Test and bench instrumentation, not part of F&O: what the simulator served (requests by kind, per entity
set, per caller; committed writes per record) and an outage switch (503 to every OData request).

Served on `/admin/stats` and `/admin/outage` (app.py); README "Stats and outage" describes the JSON.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from devstack.fno.auth import Caller
from devstack.fno.errors import ODataError
from devstack.fno.odata import Call, ODataHandler, Reply
from devstack.fno.schema import Entity
from devstack.fno.service import Change, Service


def entity_set_of(target: str) -> str:
    """`CustomersV3(dataAreaId='usmf',…)/x` -> `CustomersV3`; `$batch`, `$metadata`; `` for the service root."""
    head = unquote(target.lstrip("/").split("?", 1)[0].split("/", 1)[0])
    return head.split("(", 1)[0]


def kind_of(method: str) -> str:
    return "reads" if method.upper() == "GET" else "writes"


def record_key(entity: Entity, row: dict[str, Any]) -> str:
    """The record's key as it reads in a URL, unencoded: `dataAreaId='usmf',CustomerAccount='US-001'`."""
    return ",".join(f"{k}={row[k]}" if isinstance(row[k], int) else f"{k}='{row[k]}'" for k in entity.keys)


class Stats:
    """Counters since the last reset. Single-threaded (the simulator serves on one event loop)."""

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

    @staticmethod
    def _outcome(counters: Counter[str], status: int, prefix: str = "") -> None:
        if status == 429:
            counters[prefix + "throttled_429"] += 1
        elif status == 503:
            counters[prefix + "unavailable_503"] += 1

    def request(self, method: str, target: str, status: int, caller: str) -> None:
        """One HTTP request under /data (a `$batch` is one request)."""
        entity_set = entity_set_of(target)
        kind = "batches" if entity_set == "$batch" and method.upper() == "POST" else kind_of(method)
        self.requests["total"] += 1
        self.requests[kind] += 1
        self._outcome(self.requests, status)
        self.status[str(status)] += 1
        per_set = self.sets[entity_set]
        per_set["requests" if kind == "batches" else kind] += 1
        self._outcome(per_set, status)
        self.callers[caller]["requests"] += 1

    def operation(self, method: str, target: str, status: int, caller: str) -> None:
        """One operation inside a `$batch` (in a changeset or not)."""
        entity_set = entity_set_of(target)
        kind = kind_of(method)
        self.requests["batch_operations"] += 1
        self.requests["batch_" + kind] += 1
        self.sets[entity_set]["batch_" + kind] += 1
        self._outcome(self.sets[entity_set], status, "batch_")
        self.callers[caller]["batch_operations"] += 1

    def committed(self, changes: list[Change]) -> None:
        """Committed Create/Update/Delete changes (a rolled-back changeset or an update that changed no
        value has none)."""
        for change in changes:
            row = change.after if change.after is not None else change.before
            if row is None:
                continue
            self.writes["total"] += 1
            self.writes[change.operation] += 1
            self.sets[change.entity.collection]["rows_written"] += 1
            self.rows[change.entity.collection][record_key(change.entity, row)] += 1

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
                "by_operation": {m: self.writes[m] for m in ("Create", "Update", "Delete") if self.writes.get(m)},
                "records": len(counts),
                "max_per_record": max(counts, default=0),
                "records_written_more_than_once": sum(1 for n in counts if n > 1),
            },
        }
        if records:
            out["record_writes"] = {name: dict(per_set) for name, per_set in sorted(self.rows.items())}
        return out


class BatchCountingHandler(ODataHandler):
    """The OData handler `$batch` parts run through: counts each operation, then does what the plain one does."""

    def __init__(self, service: Service, stats: Stats) -> None:
        super().__init__(service)
        self.stats = stats

    def handle(self, call: Call, caller: Caller) -> Reply:
        reply = super().handle(call, caller)
        self.stats.operation(call.method, call.target, reply.status, str(caller.object_id))
        return reply


class Outage:
    """While on, every request under /data answers 503 with Retry-After; /admin and / keep working."""

    def __init__(self) -> None:
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

    def error(self) -> ODataError:
        return ODataError(
            503,
            f"The service is temporarily unavailable (simulated outage). Retry after {self.retry_after} seconds.",
            headers={"Retry-After": str(self.retry_after)},
        )


def outage_request(body: dict[str, Any]) -> tuple[float | None, int | None]:
    """`{"seconds": 120, "retryAfter": 10}` (both optional: no seconds = until DELETE) -> (seconds, retry after).
    Raises ValueError with the message for the problem body."""
    seconds = body.get("seconds")
    retry_after = body.get("retryAfter")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float | Decimal)
                                or seconds <= 0):
        raise ValueError("'seconds' must be a positive number (or left out: until DELETE).")
    if retry_after is not None and (isinstance(retry_after, bool) or not isinstance(retry_after, int)
                                    or retry_after < 0):
        raise ValueError("'retryAfter' must be a non-negative integer number of seconds.")
    return (float(seconds) if seconds is not None else None), retry_after
