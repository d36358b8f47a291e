"""The activity log: what happened to each change (applied, skipped and why, parked, failed).

Table `activity`: PartitionKey = `<map>|<yyyymmddHH>` (the UTC hour of `at`), RowKey = inverted
.NET ticks + a short uuid, so a partition reads newest first and a time range is a walk over hour
partitions. Table `activitymaps` remembers which maps have entries (one upsert per map per process),
so a query without a map walks those maps' partitions instead of scanning the whole table: the cost of
a query is (hours in the window) x (maps) partition reads, each cheap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from core.errors import BadInput
from core.store.tables import Tables, newest_first_key
from core.sync.domain import OUTCOMES, ActivityEntry
from core.sync.domain import Outcome as Outcome  # re-exported: the old import path

MAX_WINDOW = timedelta(days=31)
DEFAULT_WINDOW = timedelta(hours=24)
_BATCH = 100  # Table Storage transaction limits: 100 operations and 4 MiB of payload
_BATCH_BYTES = 3 * 1024 * 1024
_MAX_DETAIL = 30_000  # characters: keeps one entry well under the 64 KiB property limit


def _hour(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H")


def _partition(map_name: str, at: datetime) -> str:
    return f"{map_name}|{_hour(at)}"




def _check_map_name(name: str) -> str:
    if not name or any(c in name for c in "/\\#?|") or any(ord(c) < 0x20 for c in name):
        raise BadInput("map", f"map {name!r}: a map name cannot be empty or contain / \\ # ? | or control characters")
    return name


def _to_entity(entry: ActivityEntry) -> dict[str, Any]:
    if entry.at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"outcome {entry.outcome!r} is not one of {', '.join(OUTCOMES)}")
    detail = entry.detail
    if detail is not None and len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + " ... (cut here; the error log keeps the full text)"
    entity: dict[str, Any] = {
        "PartitionKey": _partition(_check_map_name(entry.map), entry.at),
        "RowKey": newest_first_key(entry.at),
        "Map": entry.map, "Key": entry.key, "Source": entry.source, "Operation": entry.operation,
        "Outcome": entry.outcome, "Reason": entry.reason, "EventId": entry.event_id,
        "MessageId": entry.message_id, "At": entry.at.astimezone(UTC),
    }
    optional = {"TargetId": entry.target_id, "Detail": detail, "LatencyMs": entry.latency_ms}
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


def _from_entity(entity: Any) -> ActivityEntry:
    latency = entity.get("LatencyMs")
    return ActivityEntry(
        map=entity["Map"], key=entity["Key"], source=entity["Source"], operation=entity["Operation"],
        outcome=entity["Outcome"], reason=entity["Reason"], event_id=entity.get("EventId", ""),
        message_id=entity.get("MessageId", ""), target_id=entity.get("TargetId"), detail=entity.get("Detail"),
        latency_ms=None if latency is None else float(latency),
        at=datetime.fromtimestamp(entity["At"].timestamp(), UTC),
    )


def _batches(entities: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entities of one partition in transactions under both limits (size estimated as UTF-16 text)."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entity in entities:
        weight = 2 * sum(len(str(v)) + len(k) + 16 for k, v in entity.items())
        if batches[-1] and (len(batches[-1]) >= _BATCH or size + weight > _BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(entity)
        size += weight
    return batches


class ActivityLog:
    def __init__(self, tables: Tables, *, observe: Callable[[list[ActivityEntry]], None] | None = None) -> None:
        self.tables = tables
        self.observe = observe  # shown every entry once written (core.ops.meter counts them)
        self._known_maps: set[str] = set()

    async def record(self, entries: list[ActivityEntry]) -> None:
        """Write entries in as few transactions as Table Storage allows (one partition, <= 100 each)."""
        if not entries:
            return
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in entries:
            entity = _to_entity(entry)
            by_partition[entity["PartitionKey"]].append(entity)
        await self._remember_maps({entry.map for entry in entries})
        table = await self.tables.table("activity")
        for group in by_partition.values():
            for batch in _batches(group):
                await table.submit_transaction([("create", e) for e in batch])
        if self.observe is not None:
            self.observe(entries)

    async def _remember_maps(self, names: set[str]) -> None:
        new = names - self._known_maps
        if not new:
            return
        maps = await self.tables.table("activitymaps")
        for name in sorted(new):
            await maps.upsert_entity({"PartitionKey": "map", "RowKey": name}, mode=UpdateMode.REPLACE)
        self._known_maps |= new

    async def maps(self) -> list[str]:
        table = await self.tables.table("activitymaps")
        return sorted([e["RowKey"] async for e in table.query_entities("PartitionKey eq 'map'")])

    async def query(
        self,
        *,
        map: str | None = None,
        key: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[ActivityEntry]:
        """Entries newest first, `since` <= at <= `until` (default: the last 24 hours)."""
        until = datetime.now(UTC) if until is None else until
        since = until - DEFAULT_WINDOW if since is None else since
        for name, value in (("since", since), ("until", until)):
            if value.tzinfo is None:
                raise BadInput(name, f"{name} must be timezone-aware")
        if since > until:
            raise BadInput("since", "since is after until")
        if until - since > MAX_WINDOW:
            raise BadInput("since", f"since: the window is over {MAX_WINDOW.days} days; ask for a shorter one")
        if outcome is not None and outcome not in OUTCOMES:
            raise BadInput("outcome", f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if limit < 1:
            raise BadInput("limit", "limit must be at least 1")
        names = [_check_map_name(map)] if map is not None else await self.maps()
        table = await self.tables.table("activity")
        conditions = ["PartitionKey eq @pk", "At ge @since", "At le @until"]
        params: dict[str, Any] = {"since": since.astimezone(UTC), "until": until.astimezone(UTC)}
        if key is not None:
            conditions.append("Key eq @key")
            params["key"] = key
        if outcome is not None:
            conditions.append("Outcome eq @outcome")
            params["outcome"] = outcome
        query_filter = " and ".join(conditions)
        found: list[ActivityEntry] = []
        hour = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour >= since.astimezone(UTC).replace(minute=0, second=0, microsecond=0) and len(found) < limit:
            in_hour: list[ActivityEntry] = []
            for name in names:
                pager = table.query_entities(query_filter, parameters={**params, "pk": _partition(name, hour)},
                                             results_per_page=min(limit, 1000))
                async for entity in pager:
                    in_hour.append(_from_entity(entity))
                    if len(in_hour) >= limit:
                        break  # one map's partition is newest first: the rest of it is older
            in_hour.sort(key=lambda e: e.at, reverse=True)
            found.extend(in_hour)
            hour -= timedelta(hours=1)
        return found[:limit]
