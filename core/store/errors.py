"""The error log's store: one row per failed change (keyed by its message id), with the full error text.

Table `errors`: PartitionKey = encode_key((message id,)), RowKey = "entry". The target's error text is
kept whole: it is cut into properties `Text000`, `Text001`, ... of at most 16,000 characters each (32,000
bytes of UTF-16 at worst, under the 64 KiB property limit); text beyond what the entry row holds (with the
change, cut the same way into `Change000`, ...) goes to continuation rows `text-0001`, ... of the same
partition, written before the entry row that counts them; every row stays under the 1 MiB entity limit.
`list` scans the table with a filter on Status/Map/Category and sorts by last failure: error logs are
meant to stay small (resubmit or discard), so the scan reads the open errors, not the history of changes.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from core.maps.keys import encode_key
from core.store.tables import Tables
from core.sync.domain import CATEGORIES, STATUSES, ErrorEntry, ErrorStatus
from core.sync.domain import Category as Category  # re-exported: the old import path

_ENTRY_ROW = "entry"
_CHUNK = 16_000  # characters per property
# An entity holds at most 1 MiB (UTF-16: 2 bytes per character at worst). The entry row carries the change
# (a Service Bus message, so at most 256 KB: 512 KB as UTF-16) and 12 text chunks (384 KB); continuation
# rows 28 text chunks (896 KB).
_ENTRY_TEXT_CHUNKS = 12
_MAX_CHANGE_CHARS = 256 * 1024
_ROW_TEXT_CHUNKS = 28


@dataclass(frozen=True)
class OpenError:
    map: str
    source: str
    category: str
    first_at: datetime


class ErrorNotFound(LookupError):
    """No error-log row (and no dead-letter) has this message id."""


def _chunks(text: str) -> list[str]:
    return [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]


def _properties(name: str, chunks: list[str]) -> dict[str, str]:
    return {f"{name}{i:03d}": chunk for i, chunk in enumerate(chunks)}


def entry_rows(entry: ErrorEntry) -> list[dict[str, Any]]:
    """The entry row, then the continuation rows of its text (Table Storage entities, each under 1 MiB)."""
    if len(entry.change) > _MAX_CHANGE_CHARS:
        raise ValueError(f"change: {len(entry.change)} characters, more than a Service Bus message can hold "
                         f"({_MAX_CHANGE_CHARS}); it cannot be the change of a failed message")
    partition = encode_key((entry.id,))
    chunks = _chunks(entry.text)
    first, rest = chunks[:_ENTRY_TEXT_CHUNKS], chunks[_ENTRY_TEXT_CHUNKS:]
    continuation = [rest[i : i + _ROW_TEXT_CHUNKS] for i in range(0, len(rest), _ROW_TEXT_CHUNKS)]
    main: dict[str, Any] = {
        "PartitionKey": partition, "RowKey": _ENTRY_ROW, "Id": entry.id, "Map": entry.map, "Key": entry.key,
        "Source": entry.source, "Operation": entry.operation, "Category": entry.category,
        "Attempts": entry.attempts, "SessionId": entry.session_id, "Status": entry.status,
        "FirstAt": entry.first_at.astimezone(UTC), "LastAt": entry.last_at.astimezone(UTC),
        "TextRows": 1 + len(continuation), "TextLength": len(entry.text),
        **_properties("Text", first), **_properties("Change", _chunks(entry.change)),
    }
    if entry.target_status is not None:
        main["TargetStatus"] = entry.target_status
    if entry.target_code is not None:
        main["TargetCode"] = entry.target_code
    if entry.run_id is not None:
        main["RunId"] = entry.run_id
    rows = [{"PartitionKey": partition, "RowKey": f"text-{n:04d}", **_properties("Text", part)}
            for n, part in enumerate(continuation, start=1)]
    return [main, *rows]


def _utc(value: Any) -> datetime:
    return datetime.fromtimestamp(value.timestamp(), UTC)


class ErrorLog:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def record(self, entry: ErrorEntry) -> ErrorEntry:
        """Insert, or update a row of the same id (a repeated failure): first_at stays the first one."""
        if entry.category not in CATEGORIES:
            raise ValueError(f"category {entry.category!r} is not one of {', '.join(CATEGORIES)}")
        for name in ("first_at", "last_at"):
            if getattr(entry, name).tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        earlier = await self.get(entry.id)
        if earlier is not None:
            entry.first_at = min(earlier.first_at, entry.first_at)
        table = await self.tables.table("errors")
        main, *continuation = entry_rows(entry)
        for row in continuation:  # before the entry row that counts them, so a reader never misses one
            await table.upsert_entity(row, mode=UpdateMode.REPLACE)
        await table.upsert_entity(main, mode=UpdateMode.REPLACE)
        return entry

    async def get(self, id: str) -> ErrorEntry | None:
        table = await self.tables.table("errors")
        partition = encode_key((id,))
        try:
            entity = await table.get_entity(partition, _ENTRY_ROW)
        except ResourceNotFoundError:
            return None
        return await self._entry(entity, partition)

    async def _entry(self, entity: Any, partition: str) -> ErrorEntry:
        texts = [_joined(entity, "Text")]
        if entity.get("TextRows", 1) > 1:
            table = await self.tables.table("errors")
            for number in range(1, entity["TextRows"]):
                texts.append(_joined(await table.get_entity(partition, f"text-{number:04d}"), "Text"))
        return ErrorEntry(
            id=entity["Id"], map=entity["Map"], key=entity["Key"], source=entity["Source"],
            operation=entity["Operation"], category=entity["Category"], text="".join(texts),
            attempts=int(entity["Attempts"]), change=_joined(entity, "Change"), session_id=entity["SessionId"],
            status=entity["Status"], first_at=_utc(entity["FirstAt"]), last_at=_utc(entity["LastAt"]),
            target_status=entity.get("TargetStatus"), target_code=entity.get("TargetCode"),
            run_id=entity.get("RunId"),
        )

    async def list(
        self, *, map: str | None = None, status: str | None = "open", category: str | None = None, limit: int = 100
    ) -> list[ErrorEntry]:
        """Entries newest failure first. `status=None` lists every status."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"category {category!r} is not one of {', '.join(CATEGORIES)}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        conditions = ["RowKey eq @row"]
        params: dict[str, Any] = {"row": _ENTRY_ROW}
        for name, value in (("Map", map), ("Status", status), ("Category", category)):
            if value is not None:
                conditions.append(f"{name} eq @{name.lower()}")
                params[name.lower()] = value
        table = await self.tables.table("errors")
        found = [await self._entry(e, e["PartitionKey"])
                 async for e in table.query_entities(" and ".join(conditions), parameters=params)]
        found.sort(key=lambda e: e.last_at, reverse=True)
        return found[:limit]

    async def open_summary(self) -> builtins.list[OpenError]:
        """Every open entry's map, source, category and first failure: what the metrics count (no texts read)."""
        table = await self.tables.table("errors")
        return [OpenError(map=e.get("Map") or "unknown", source=e.get("Source") or "", category=e.get("Category") or "",
                          first_at=_utc(e["FirstAt"]))
                async for e in table.query_entities("RowKey eq @row and Status eq 'open'",
                                                    parameters={"row": _ENTRY_ROW},
                                                    select=["Map", "Source", "Category", "FirstAt"])]

    async def set_status(self, id: str, status: ErrorStatus) -> None:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        table = await self.tables.table("errors")
        try:
            await table.update_entity({"PartitionKey": encode_key((id,)), "RowKey": _ENTRY_ROW, "Status": status},
                                      mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            raise ErrorNotFound(f"no error with id {id!r}") from None


def _joined(entity: Any, name: str) -> str:
    parts = sorted((k, v) for k, v in entity.items() if k.startswith(name) and k[len(name):].isdigit())
    return "".join(v for _, v in parts)
