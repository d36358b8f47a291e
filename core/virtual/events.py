"""External change notifications from F&O events: an F&O business or data event arriving at the ingest (HTTPS or the
fno-events queue) for the entity behind a virtual table whose definition has `notify.fno_events` is told to Dataverse
as that table's OnExternalCreated / OnExternalUpdated / OnExternalDeleted, so its flows and plug-ins fire.

Off the request path, in two steps:
1. `note_fno_events` (called by the ingest after the changes are queued): the events that concern such a table go to
   an outbox in Table Storage (`vtevents`: partition = entity set, row = event time + event id, so a redelivered
   event lands on the same row). Nothing is written, and no definition is read twice, when no definition asks for
   it; an event of any other entity is left alone.
2. `deliver` (the `vt_fno_events` timer, every minute): each table's outbox rows in event order, told to Dataverse
   (the row as Target, re-read from F&O for a create or update; the event's keys for a delete), each row deleted once
   told. A row Dataverse (or F&O) refuses stays with `Attempts` and `LastError` and is tried again at the next run,
   before anything later of its table: a failure ends recorded and retryable, never lost.

The id is the one the OData service hands out (core.virtual.keys.id_of of the key values the event carries)."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from core.events.model import ChangeEvent
from core.store.tables import Tables
from core.virtual.catalog import DefinitionError, load_folder
from core.virtual.filter import Compare, all_of
from core.virtual.keys import id_of, typed_key
from core.virtual.model import DerivedKey, FnoSource, VirtualTable
from core.virtual.notify import DataverseEvents, Told, target_of
from core.virtual.service import VirtualService

log = logging.getLogger(__name__)
OUTBOX = "vtevents"
ACTIONS = {"Create": "OnExternalCreated", "Update": "OnExternalUpdated", "Delete": "OnExternalDeleted"}


@dataclass(frozen=True)
class Pending:
    entity_set: str
    action: str
    row_id: uuid.UUID
    key: dict[str, Any]  # key column (OData name) -> value, as the event carries it
    event_id: str
    occurred_at: datetime

    @property
    def row_key(self) -> str:
        digest = hashlib.sha256(self.event_id.encode()).hexdigest()[:24]
        return f"{self.occurred_at.astimezone(UTC):%Y%m%dT%H%M%S%f}-{digest}"


def _key_names(table: VirtualTable) -> list[str]:
    return table.key.columns if isinstance(table.key, DerivedKey) else [table.key.column]


def event_tables(tables: Iterable[VirtualTable]) -> dict[str, list[VirtualTable]]:
    """F&O entity set -> the virtual tables told about its events."""
    found: dict[str, list[VirtualTable]] = {}
    for table in tables:
        if table.notify is not None and table.notify.fno_events and isinstance(table.source, FnoSource):
            found.setdefault(table.source.entity_set, []).append(table)
    return found


def _kinds(body: bytes) -> dict[str, str]:
    """event id -> Create / Update / Delete as F&O said it (the change event keeps only refetch or delete)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    kinds: dict[str, str] = {}
    for item in payload if isinstance(payload, list) else [payload]:
        if not isinstance(item, dict):
            continue
        if "BusinessEventId" in item:
            kinds[f"fno:{item.get('EventId')}"] = str(item.get("ChangeType") or "Update")
        elif "MessageName" in item:
            try:
                kinds[f"fno:{uuid.UUID(str(item.get('OperationId')).strip())}"] = str(item["MessageName"])
            except ValueError:
                continue
    return kinds


def pending_of(body: bytes, events: Sequence[ChangeEvent], tables: Iterable[VirtualTable]) -> list[Pending]:
    """What to tell for the parsed F&O events of one delivery; events of entities behind no such table: nothing."""
    by_entity = event_tables(tables)
    wanted = [e for e in events if e.source == "fno" and e.entity in by_entity]
    if not wanted:
        return []
    kinds = _kinds(body)
    found: list[Pending] = []
    lacking: dict[tuple[str, str], VirtualTable] = {}
    # One F&O event comes as one change event per map reading its entity (core.events.fno): a table is told
    # once per source event, from the first copy that carries its key.
    told: set[tuple[str, str]] = set()
    for event in wanted:
        kind = "Delete" if event.operation == "delete" else kinds.get(event.event_id, "Update")
        for table in by_entity[event.entity]:
            if (table.entity_set, event.event_id) in told:
                continue
            key: dict[str, Any] = {}
            for name in _key_names(table):
                column = table.column(name)
                assert column is not None  # the model checks key columns exist
                value = event.keys.get(column.source_name)
                if value is None:
                    break
                key[name] = typed_key(column.type, value) if isinstance(value, str) else value
            else:
                found.append(
                    Pending(
                        table.entity_set,
                        ACTIONS.get(kind, "OnExternalUpdated"),
                        id_of(table, key),
                        key,
                        event.event_id,
                        event.occurred_at,
                    )
                )
                told.add((table.entity_set, event.event_id))
                continue
            lacking[(table.entity_set, event.event_id)] = table
    for (entity_set, event_id), table in lacking.items():
        if (entity_set, event_id) not in told:
            log.warning("virtual table %s: F&O event %s lacks key %s; not told", entity_set, event_id,
                        _key_names(table))
    return found


class Outbox:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def add(self, items: Sequence[Pending]) -> None:
        client = await self.tables.table(OUTBOX)
        for item in items:
            await client.upsert_entity(
                {
                    "PartitionKey": item.entity_set,
                    "RowKey": item.row_key,
                    "Action": item.action,
                    "Id": str(item.row_id),
                    "Key": json.dumps({k: _text(v) for k, v in item.key.items()}),
                    "EventId": item.event_id,
                    "Attempts": 0,
                }
            )

    async def waiting(self, entity_set: str, limit: int) -> list[dict[str, Any]]:
        client = await self.tables.table(OUTBOX)
        quoted = entity_set.replace("'", "''")
        rows: list[dict[str, Any]] = []
        async for entity in client.query_entities(f"PartitionKey eq '{quoted}'"):
            rows.append(dict(entity))
            if len(rows) >= limit:
                break
        return rows  # Table Storage returns a partition in RowKey order: event order

    async def done(self, entry: Mapping[str, Any]) -> None:
        client = await self.tables.table(OUTBOX)
        await client.delete_entity(str(entry["PartitionKey"]), str(entry["RowKey"]))

    async def failed(self, entry: Mapping[str, Any], problem: str) -> None:
        client = await self.tables.table(OUTBOX)
        await client.update_entity(
            {
                "PartitionKey": entry["PartitionKey"],
                "RowKey": entry["RowKey"],
                "Attempts": int(entry.get("Attempts") or 0) + 1,
                "LastError": problem[:2000],
                "LastTried": datetime.now(UTC).isoformat(),
            }
        )


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID | datetime) else value


@cache
def _definitions(path: str) -> tuple[VirtualTable, ...]:
    try:
        return tuple(load_folder(Path(path)))
    except (DefinitionError, OSError) as error:
        log.warning("virtual table definitions cannot be read; F&O events are not told to Dataverse: %s", error)
        return ()


async def note_fno_events(settings: Any, tables_store: Tables, body: bytes, events: Sequence[ChangeEvent]) -> int:
    """Called by the ingest once the changes are queued: puts what concerns a notifying F&O virtual table in the
    outbox (in `tables_store`, the caller's: it closes it). Raises when Table Storage fails (the queue trigger lets
    the broker redeliver; HTTPS logs it)."""
    tables = _definitions(str(settings.virtual_tables_path))
    if not events or not event_tables(tables):
        return 0
    items = pending_of(body, events, tables)
    if items:
        await Outbox(tables_store).add(items)
    return len(items)


async def deliver(service: VirtualService, events: DataverseEvents, outbox: Outbox, *, batch: int = 500) -> list[Told]:
    """One run: every F&O-event table's outbox, in event order; a table stops at its first failure (kept, retried)."""
    results: list[Told] = []
    for table in event_tables(service.tables.values()).values():
        for t in table:
            results.append(await _deliver_table(service, t, events, outbox, batch))
    for result in results:
        if result.problem:
            log.warning(
                "virtual table %s: F&O events not told to Dataverse (kept, retried next run): %s",
                result.entity_set,
                result.problem,
            )
    return results


async def _deliver_table(
    service: VirtualService, table: VirtualTable, events: DataverseEvents, outbox: Outbox, batch: int
) -> Told:
    told = Told(table.entity_set)
    entries = await outbox.waiting(table.entity_set, batch)
    for entry in entries:
        action = str(entry["Action"])
        try:
            key = {
                name: typed_key(table.column(name).type, value)  # type: ignore[union-attr]
                if isinstance(value, str)
                else value
                for name, value in json.loads(str(entry["Key"])).items()
            }
            dataverse = await events.table_of(table.entity_set)
            if dataverse is None:
                raise LookupError(f"no Dataverse virtual table has the external collection name {table.entity_set}")
            row: Mapping[str, Any] = key
            if action != "OnExternalDeleted":
                found = await service.source(table).rows(
                    all_of([Compare("eq", name, value) for name, value in key.items()]), [], 0, 1
                )
                row = found[0] if found else key  # gone since: tell what the event named
            target = {k: v for k, v in target_of(table, dataverse, row).items() if v is not None}
            await events.tell(action, target)
        except Exception as error:  # anything: kept with its error, tried again at the next run
            told.problem = f"{action} for {entry.get('Id')}: {error}"
            await outbox.failed(entry, told.problem)
            break
        await outbox.done(entry)
        if action == "OnExternalDeleted":
            told.deleted += 1
        elif action == "OnExternalCreated":
            told.created += 1
        else:
            told.updated += 1
    return told
