"""The per-minute counts of every instance (core.ops.meter), and the last deployment's outcome.

Table `metrics`: PartitionKey = the UTC minute `yyyymmddHHMM`, RowKey = `<instance>|<map>|<direction>` (a
side's throttling: `<instance>|*|<side>`). An instance rewrites its own rows of a minute with its running
totals, so writers never meet; a window is one range query over its minutes. Rows older than a day are of no
use to anyone: `prune` deletes them (the alert timer calls it now and then).

Table `deployments`: one row, the last deployment's outcome (the `deployment_failed` alert reads it).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from pydantic import BaseModel

from core.ops.meter import LAG_BOUNDS, MinuteRow, Tally, minute_of
from core.store.tables import Tables

KEEP = timedelta(days=1)
_TRANSACTION = 100


def _row(row: MinuteRow) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": row.minute, "RowKey": f"{row.instance}|{row.map}|{row.direction}",
                              "Map": row.map, "Direction": row.direction}
    if row.map == "*":
        entity["Throttled"] = row.throttled
        return entity
    t = row.tally
    entity.update({"Applied": t.applied, "Failed": t.failed, "Skipped": t.skipped, "Parked": t.parked,
                   "Retrying": t.retrying, "Lag": ",".join(map(str, t.lag)), "LagSum": float(t.lag_sum)})
    if t.wait_max is not None:
        entity["WaitMax"] = float(t.wait_max)
    if t.last_applied_at is not None:
        entity["LastApplied"] = t.last_applied_at.astimezone(UTC)
    return entity


def _tally(entity: Any) -> Tally:
    lag = [int(n) for n in str(entity.get("Lag") or "").split(",") if n]
    if len(lag) != len(LAG_BOUNDS) + 1:  # written with other bounds: the counts stand, the lag does not
        lag = [0] * (len(LAG_BOUNDS) + 1)
    last = entity.get("LastApplied")
    return Tally(applied=int(entity.get("Applied") or 0), failed=int(entity.get("Failed") or 0),
                 skipped=int(entity.get("Skipped") or 0), parked=int(entity.get("Parked") or 0),
                 retrying=int(entity.get("Retrying") or 0), lag=lag, lag_sum=float(entity.get("LagSum") or 0),
                 wait_max=None if entity.get("WaitMax") is None else float(entity["WaitMax"]),
                 last_applied_at=None if last is None else datetime.fromtimestamp(last.timestamp(), UTC))


class Deployment(BaseModel):
    status: Literal["ok", "failed", "unknown"]
    at: datetime | None = None
    detail: str | None = None


class MetricStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def write(self, rows: list[MinuteRow]) -> None:
        table = await self.tables.table("metrics")
        by_minute: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_minute.setdefault(row.minute, []).append(_row(row))
        jobs = []
        for entities in by_minute.values():
            for start in range(0, len(entities), _TRANSACTION):
                jobs.append(table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE})
                                                      for e in entities[start:start + _TRANSACTION]]))
        await asyncio.gather(*jobs)

    async def window(self, since: datetime, until: datetime) -> tuple[dict[tuple[str, str], Tally], dict[str, int]]:
        """Every instance's counts in [since, until] by minute: per (map, direction) summed, and throttled
        responses per side."""
        table = await self.tables.table("metrics")
        tallies: dict[tuple[str, str], Tally] = {}
        throttled: dict[str, int] = {}
        query = "PartitionKey ge @since and PartitionKey le @until"
        async for entity in table.query_entities(query, parameters={"since": minute_of(since),
                                                                    "until": minute_of(until)}):
            if entity.get("Map") == "*":
                side = str(entity.get("Direction"))
                throttled[side] = throttled.get(side, 0) + int(entity.get("Throttled") or 0)
                continue
            key = (str(entity.get("Map")), str(entity.get("Direction")))
            tallies.setdefault(key, Tally()).add(_tally(entity))
        return tallies, throttled

    async def prune(self, now: datetime | None = None, keep: timedelta = KEEP) -> int:
        """Delete the rows older than `keep`; how many went."""
        table = await self.tables.table("metrics")
        cutoff = minute_of((now or datetime.now(UTC)) - keep)
        old: dict[str, list[str]] = {}
        async for entity in table.query_entities("PartitionKey lt @cutoff", parameters={"cutoff": cutoff},
                                                 select=["PartitionKey", "RowKey"]):
            old.setdefault(entity["PartitionKey"], []).append(entity["RowKey"])
        for partition, keys in old.items():
            for start in range(0, len(keys), _TRANSACTION):
                await table.submit_transaction([("delete", {"PartitionKey": partition, "RowKey": k})
                                                for k in keys[start:start + _TRANSACTION]])
        return sum(len(k) for k in old.values())

    async def record_deployment(self, ok: bool, detail: str, at: datetime | None = None) -> None:
        table = await self.tables.table("deployments")
        await table.upsert_entity({"PartitionKey": "last", "RowKey": "deployment", "Status": "ok" if ok else "failed",
                                   "At": (at or datetime.now(UTC)).astimezone(UTC), "Detail": detail[:30_000]},
                                  mode=UpdateMode.REPLACE)

    async def deployment(self) -> Deployment:
        table = await self.tables.table("deployments")
        try:
            row = await table.get_entity("last", "deployment")
        except ResourceNotFoundError:
            return Deployment(status="unknown")
        return Deployment(status=row.get("Status") or "unknown", detail=row.get("Detail"),
                          at=datetime.fromtimestamp(row["At"].timestamp(), UTC) if row.get("At") else None)
