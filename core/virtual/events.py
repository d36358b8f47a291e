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
   told. A transient failure (throttling, 5xx, timeouts: the connectors' TransientError) keeps the row, with `Attempts`
   and `LastError`, and the table's order: it is tried again at the next run, before anything later of its table. A
   refusal (a PermanentError: 4xx, a row that cannot be read), or a row that failed `max_attempts` runs, is set aside:
   recorded in the engine's error log (operation `vt_notify`, its full text, table and key, the outbox row as its
   change) and taken out of the outbox, so one poison row never holds back its table's later notifications.
   Resubmitting the entry puts the row back in the outbox under its own row key (told first at the next run);
   discarding it gives it up. Refused access (401/403: the engine's credentials, not the row) sets nothing aside and
   counts no attempt: the table waits, in order, until access is mended.

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
from typing import Any, Protocol

from core.connectors.errors import AuthFailed, ConnectorError, TransientError
from core.events.model import ChangeEvent
from core.ops.errors import VT_NOTIFY  # the error log's operation of a set-aside notification (resubmitted there)
from core.store.tables import Tables
from core.sync.domain import ErrorEntry
from core.sync.errors import category_of, error_text
from core.virtual.catalog import DefinitionError, load_folder
from core.virtual.filter import Compare, all_of
from core.virtual.keys import id_of, typed_key
from core.virtual.model import DerivedKey, FnoSource, VirtualTable
from core.virtual.notify import DataverseEvents, Told, target_of
from core.virtual.service import VirtualService

log = logging.getLogger(__name__)
OUTBOX = "vtevents"
ERROR_PREFIX = "vtevents:"  # error ids of set-aside notifications: `vtevents:<entity set>|<row key>`
MAX_ATTEMPTS = 10  # runs a notification may fail transiently (the setting VT_EVENTS_MAX_ATTEMPTS's default)
_ROW_FIELDS = ("PartitionKey", "RowKey", "Action", "Id", "Key", "EventId")  # what a set-aside row keeps
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


    async def restore(self, row: Mapping[str, Any]) -> None:
        """Put a set-aside row back (resubmitted from the error log), its attempts counted from zero."""
        client = await self.tables.table(OUTBOX)
        await client.upsert_entity({**{name: row[name] for name in _ROW_FIELDS}, "Attempts": 0})


class FailureLog(Protocol):
    """Where a set-aside notification is recorded: the engine's error log (core.store.errors.ErrorLog)."""

    async def record(self, entry: ErrorEntry) -> ErrorEntry: ...


def error_id(entry: Mapping[str, Any]) -> str:
    return f"{ERROR_PREFIX}{entry['PartitionKey']}|{entry['RowKey']}"


async def restore(tables: Tables, change: str) -> None:
    """Resubmit of an error-log entry of operation `vt_notify`: its outbox row back in the outbox. ValueError when
    `change` is not such a row (the entry stays open)."""
    try:
        row = json.loads(change)
        missing = [name for name in _ROW_FIELDS if not isinstance(row, dict) or name not in row]
    except ValueError as error:
        raise ValueError(f"not an outbox row of a virtual table notification: {error}") from None
    if missing:
        raise ValueError(f"not an outbox row of a virtual table notification: it lacks {', '.join(missing)}")
    await Outbox(tables).restore(row)


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


async def deliver(
    service: VirtualService,
    events: DataverseEvents,
    outbox: Outbox,
    failures: FailureLog,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    batch: int = 500,
) -> list[Told]:
    """One run: every F&O-event table's outbox, in event order. A table stops at a transient failure (kept, retried
    next run); a refused row, or one that failed `max_attempts` runs, goes to the error log and the table goes on."""
    results: list[Told] = []
    for table in event_tables(service.tables.values()).values():
        for t in table:
            results.append(await _deliver_table(service, t, events, outbox, failures, batch, max_attempts))
    for result in results:
        if result.problem:
            log.warning("virtual table %s: F&O events not all told to Dataverse: %s", result.entity_set,
                        result.problem)
    return results


async def _tell(
    service: VirtualService, table: VirtualTable, events: DataverseEvents, entry: Mapping[str, Any]
) -> None:
    action = str(entry["Action"])
    key = {
        name: typed_key(table.column(name).type, value)  # type: ignore[union-attr]
        if isinstance(value, str)
        else value
        for name, value in json.loads(str(entry["Key"])).items()
    }
    dataverse = await events.table_of(table.entity_set)
    if dataverse is None:  # unregistered between the run's check and this row: retried like a transient failure
        raise NotRegistered(f"no Dataverse virtual table has the external collection name {table.entity_set}")
    row: Mapping[str, Any] = key
    if action != "OnExternalDeleted":
        found = await service.source(table).rows(
            all_of([Compare("eq", name, value) for name, value in key.items()]), [], 0, 1
        )
        row = found[0] if found else key  # gone since: tell what the event named
    target = {k: v for k, v in target_of(table, dataverse, row).items() if v is not None}
    await events.tell(action, target)


async def _unregistered(events: DataverseEvents, table: VirtualTable) -> bool:
    """Whether Dataverse answered that it has no such virtual table; a failing lookup is no answer (the rows' own
    tries handle it)."""
    try:
        return await events.table_of(table.entity_set) is None
    except Exception:  # transient or not, _tell meets it again and classifies it
        return False


class NotRegistered(Exception):
    """The table has no Dataverse virtual table yet (transient: it may be registered later)."""


def _connector_error(error: BaseException) -> ConnectorError | None:
    """The connector error behind `error` (a source wraps F&O's in a SourceError), if any."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, ConnectorError):
        seen = seen.__cause__
    return seen


def _transient(error: Exception) -> bool:
    """The connectors' classification when a call failed; a row that cannot be read (bad JSON, an unknown column)
    fails the same way every time; anything else (a dropped connection, a table not registered yet) may pass."""
    cause = _connector_error(error)
    if cause is not None:
        return isinstance(cause, TransientError)
    return not isinstance(error, ValueError | KeyError | TypeError | AttributeError)


async def _set_aside(entry: Mapping[str, Any], table: VirtualTable, error: Exception, attempts: int,
                     outbox: Outbox, failures: FailureLog) -> str:
    """Record the row in the error log, then take it out of the outbox (a crash in between records it again under the
    same id at the next run: never lost, never twice)."""
    cause = _connector_error(error)
    why = "refused" if not _transient(error) else f"failed {attempts} runs"
    text = (f"virtual table {table.entity_set}: {entry['Action']} for row {entry.get('Id')} (key {entry.get('Key')}, "
            f"F&O event {entry.get('EventId')}, outbox row {entry['RowKey']}) {why}; set aside so the table's later "
            f"notifications go on. Resubmit to tell it again.\n\n{error_text(cause or error)}")
    now = datetime.now(UTC)
    await failures.record(ErrorEntry(
        id=error_id(entry), map=f"vt:{table.entity_set}", key=str(entry.get("Key") or ""), source="fno",
        operation=VT_NOTIFY, category=category_of(cause or error), text=text, attempts=attempts,
        change=json.dumps({name: entry.get(name) for name in _ROW_FIELDS}), session_id="", first_at=now, last_at=now,
        target_status=cause.status if cause is not None else None, target_code=(cause.code or None) if cause else None,
    ))
    await outbox.done(entry)
    log.error("virtual table %s: %s for %s set aside in the error log as %s: %s", table.entity_set, entry["Action"],
              entry.get("Id"), error_id(entry), error)
    return text


async def _deliver_table(
    service: VirtualService, table: VirtualTable, events: DataverseEvents, outbox: Outbox, failures: FailureLog,
    batch: int, max_attempts: int,
) -> Told:
    told = Told(table.entity_set)
    entries = await outbox.waiting(table.entity_set, batch)
    if entries and await _unregistered(events, table):
        # Nothing in Dataverse can be told, nor listens: keeping the rows would only grow the outbox (and, after
        # max_attempts runs each, fill the error log). From its registration on, the table is told.
        for entry in entries:
            await outbox.done(entry)
        told.problem = (f"no Dataverse virtual table has the external collection name {table.entity_set}: "
                        f"{len(entries)} F&O event notification(s) dropped; register the table to be told")
        log.warning("virtual table %s: %s", table.entity_set, told.problem)
        return told
    for entry in entries:
        action = str(entry["Action"])
        try:
            await _tell(service, table, events, entry)
        except Exception as error:  # anything: kept and retried, or set aside in the error log; never lost
            if isinstance(_connector_error(error), AuthFailed):
                # The engine's credentials, not this row: every row would fail alike, so none is set aside or
                # counted; the table waits, in order, until access is mended.
                told.problem = f"{action} for {entry.get('Id')} (kept, retried next run): Dataverse refused the " \
                               f"engine's access: {error}"
                log.error("virtual table %s: %s", table.entity_set, told.problem)
                break
            attempts = int(entry.get("Attempts") or 0) + 1
            if _transient(error) and attempts < max_attempts:
                told.problem = f"{action} for {entry.get('Id')} (kept, retried next run): {error}"
                await outbox.failed(entry, f"{action} for {entry.get('Id')}: {error}")
                break  # the table's order holds: nothing later goes before it
            told.problem = f"{action} for {entry.get('Id')} set aside in the error log as {error_id(entry)}: {error}"
            await _set_aside(entry, table, error, attempts, outbox, failures)
            continue
        await outbox.done(entry)
        if action == "OnExternalDeleted":
            told.deleted += 1
        elif action == "OnExternalCreated":
            told.created += 1
        else:
            told.updated += 1
    return told
