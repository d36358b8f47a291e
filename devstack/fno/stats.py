"""Test and bench instrumentation, not part of F&O: the shared counters and outage switch
(devstack/simstats.py) as this simulator names entity sets and records and words its 503, and the OData
handler that counts each operation of a `$batch`.

Served on `/admin/stats` and `/admin/outage` (app.py); README "Stats and outage" describes the JSON.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from devstack import simstats
from devstack.fno.auth import Caller
from devstack.fno.errors import ODataError
from devstack.fno.odata import Call, ODataHandler, Reply
from devstack.fno.schema import Entity
from devstack.fno.service import Change, Service
from devstack.simstats import outage_request as outage_request


def entity_set_of(target: str) -> str:
    """`CustomersV3(dataAreaId='usmf',…)/x` -> `CustomersV3`; `$batch`, `$metadata`; `` for the service root."""
    head = unquote(target.lstrip("/").split("?", 1)[0].split("/", 1)[0])
    return head.split("(", 1)[0]


def record_key(entity: Entity, row: dict[str, Any]) -> str:
    """The record's key as it reads in a URL, unencoded: `dataAreaId='usmf',CustomerAccount='US-001'`."""
    return ",".join(f"{k}={row[k]}" if isinstance(row[k], int) else f"{k}='{row[k]}'" for k in entity.keys)


class Stats(simstats.Stats):
    def __init__(self) -> None:
        super().__init__(entity_set_of, writes_by="by_operation")

    def committed(self, changes: list[Change]) -> None:
        """Committed Create/Update/Delete changes (a rolled-back changeset or an update that changed no
        value has none)."""
        for change in changes:
            row = change.after if change.after is not None else change.before
            if row is None:
                continue
            self.wrote(change.entity.collection, record_key(change.entity, row), change.operation)


class BatchCountingHandler(ODataHandler):
    """The OData handler `$batch` parts run through: counts each operation, then does what the plain one does."""

    def __init__(self, service: Service, stats: Stats) -> None:
        super().__init__(service)
        self.stats = stats

    def handle(self, call: Call, caller: Caller) -> Reply:
        reply = super().handle(call, caller)
        self.stats.operation(call.method, call.target, reply.status, str(caller.object_id))
        return reply


def _unavailable(retry_after: int) -> ODataError:
    return ODataError(
        503, f"The service is temporarily unavailable (simulated outage). Retry after {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


class Outage(simstats.Outage):
    """While on, every request under /data answers 503 with Retry-After; /admin and / keep working."""

    def __init__(self) -> None:
        super().__init__(_unavailable)
