"""Test and bench instrumentation, not part of Dataverse: the shared counters and outage switch
(devstack/simstats.py) as this simulator names entity sets and words its 503, and the tap on its event
pipeline that counts committed row writes.

Served on `/_sim/stats` and `/_sim/outage` (app.py); README "Stats and outage" describes the JSON.
"""

from __future__ import annotations

from typing import Any

from devstack import simstats
from devstack.dataverse.errors import DataverseError
from devstack.dataverse.records import Event, Pipeline
from devstack.dataverse.schema import Table
from devstack.dataverse.store import Database
from devstack.simstats import outage_request as outage_request

# Dataverse has no documented code for "service unavailable" answers; the simulator uses the generic
# platform failure code it also uses for its 500s, in the documented Web API error shape.
UNAVAILABLE_CODE = "0x80040216"


def entity_set_of(path: str) -> str:
    """`accounts(…)/x` -> `accounts`; `$batch`, `$metadata`, `EntityDefinitions`, `WhoAmI`; `` for the root."""
    head = path.lstrip("/").split("?", 1)[0].split("/", 1)[0]
    return head.split("(", 1)[0]


class Stats(simstats.Stats):
    def __init__(self) -> None:
        super().__init__(entity_set_of, writes_by="by_message")

    def wrote_row(self, table: Table, row_id: str, message: str) -> None:
        """A committed Create/Update/Delete of one row (UpsertMultiple: one per target)."""
        self.wrote(table.entity_set, row_id, message)


def _unavailable(retry_after: int) -> DataverseError:
    return DataverseError(
        503, UNAVAILABLE_CODE,
        f"The service is temporarily unavailable (simulated outage). Retry after {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


class Outage(simstats.Outage):
    """While on, every Web API request answers 503 with Retry-After; `/_sim/*` keeps working."""

    def __init__(self) -> None:
        super().__init__(_unavailable)


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
            Database.after_commit(lambda: self.stats.wrote_row(event.table, event.row_id, event.message))
        self.inner.queue_async(event)
