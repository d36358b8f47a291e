"""Revisions of maps changed through the management API, in Table Storage.

Table `mapversions`: PartitionKey = map name, RowKey = the revision number zero-padded (1, 2, 3... per map, so a
partition reads oldest first): the map's JSON text as it was sent (parts `Body0`, `Body1`... of at most
PART_UNITS characters each: a string property holds 64 KiB of UTF-16), the map's own `version`, who stored it,
when, and why. Rows are never changed: revision n+1 is a create-only insert, which Table Storage refuses when
the row exists, so of two writers of the same revision one wins and the other hears it (RevisionTaken).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from core.maps.overlay import StoredMap
from core.store.tables import Tables

TABLE = "mapversions"
PART_UNITS = 30_000  # UTF-16 code units a part holds: 60,000 bytes, under a string property's 64 KiB
MAX_PARTS = 15  # 900 KB of UTF-16 at most, leaving room under an entity's 1 MiB for the other properties
MAX_UNITS = PART_UNITS * MAX_PARTS
_REASON_CHARS = 30_000
_DIGITS = 10


class BodyTooLarge(ValueError):
    """A map's text longer than a row holds."""

    def __init__(self, units: int) -> None:
        super().__init__(f"the map's JSON is {units:,} characters long as Table Storage counts them (UTF-16); "
                         f"at most {MAX_UNITS:,} (about 900 KB) can be stored")
        self.units = units


class RevisionTaken(Exception):
    """The revision was stored by someone else meanwhile (a create of an existing row)."""

    def __init__(self, map_name: str, revision: int) -> None:
        super().__init__(f"revision {revision} of map {map_name!r} was stored by someone else meanwhile")
        self.map = map_name
        self.revision = revision


@dataclass(frozen=True)
class MapRevision:
    map: str
    revision: int
    version: str  # the map's own `version`
    by: str
    at: datetime
    reason: str
    body: str | None = None  # the map's JSON text; None in a listing

    def stored(self) -> StoredMap:
        assert self.body is not None, "a listed revision carries no body: get it"
        return StoredMap(self.map, self.revision, self.body)


def split_body(text: str) -> list[str]:
    """`text` in parts of at most PART_UNITS UTF-16 code units, never cutting a surrogate pair (characters
    outside the BMP count two); BodyTooLarge when a row cannot hold it."""
    units = text.encode("utf-16-le")
    if len(units) // 2 > MAX_UNITS:
        raise BodyTooLarge(len(units) // 2)
    parts: list[str] = []
    start = 0
    while start < len(units):
        end = min(start + 2 * PART_UNITS, len(units))
        if end < len(units) and 0xD800 <= int.from_bytes(units[end - 2:end], "little") <= 0xDBFF:
            end -= 2  # the high half of a pair: it goes with its low half into the next part
        parts.append(units[start:end].decode("utf-16-le"))
        start = end
    return parts or [""]


def _row_key(revision: int) -> str:
    return f"{revision:0{_DIGITS}d}"


def _partition_filter(map_name: str) -> str:
    return f"PartitionKey eq '{map_name.replace(chr(39), chr(39) * 2)}'"


def _revision(row: Any, *, with_body: bool) -> MapRevision:
    at = row.get("At")
    body = "".join(row.get(f"Body{n}") or "" for n in range(int(row.get("BodyParts") or 0))) if with_body else None
    return MapRevision(map=row["PartitionKey"], revision=int(row["RowKey"]), version=row.get("Version") or "",
                       by=row.get("By") or "", reason=row.get("Reason") or "", body=body,
                       at=datetime.fromtimestamp(at.timestamp(), UTC) if at is not None else datetime.now(UTC))


class MapVersionStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def latest_revisions(self) -> dict[str, int]:
        """The latest revision of every stored map: one query of the keys alone, what a running app asks every
        30 s to notice a new revision."""
        table = await self.tables.table(TABLE)
        latest: dict[str, int] = {}
        async for row in table.list_entities(select=["PartitionKey", "RowKey"]):
            name, revision = row["PartitionKey"], int(row["RowKey"])
            latest[name] = max(revision, latest.get(name, 0))
        return latest

    async def latest(self, map_name: str) -> int:
        """The latest revision of one map; 0 when none is stored."""
        table = await self.tables.table(TABLE)
        revision = 0
        async for row in table.query_entities(_partition_filter(map_name), select=["RowKey"]):
            revision = max(revision, int(row["RowKey"]))
        return revision

    async def get(self, map_name: str, revision: int) -> MapRevision | None:
        """One revision with its body; None when there is no such revision."""
        table = await self.tables.table(TABLE)
        try:
            return _revision(await table.get_entity(map_name, _row_key(revision)), with_body=True)
        except ResourceNotFoundError:
            return None

    async def history(self, map_name: str) -> list[MapRevision]:
        """Every revision of a map, newest first, without bodies."""
        table = await self.tables.table(TABLE)
        rows = [_revision(row, with_body=False) async for row in table.query_entities(
            _partition_filter(map_name), select=["PartitionKey", "RowKey", "Version", "By", "At", "Reason"])]
        return sorted(rows, key=lambda each: each.revision, reverse=True)

    async def add(self, map_name: str, revision: int, body: str, *, version: str, by: str, reason: str = "",
                  at: datetime | None = None) -> MapRevision:
        """Store `body` as `revision` of the map; RevisionTaken when that revision exists (create-only, so two
        writers of the same revision cannot both succeed), BodyTooLarge when a row cannot hold it."""
        parts = split_body(body)
        at = at or datetime.now(UTC)
        entity: dict[str, Any] = {"PartitionKey": map_name, "RowKey": _row_key(revision), "Version": version,
                                  "By": by, "At": at, "Reason": reason[:_REASON_CHARS], "BodyParts": len(parts)}
        entity.update({f"Body{n}": part for n, part in enumerate(parts)})
        table = await self.tables.table(TABLE)
        try:
            await table.create_entity(entity)
        except ResourceExistsError:
            raise RevisionTaken(map_name, revision) from None
        return MapRevision(map_name, revision, version, by, at, reason[:_REASON_CHARS], body)
