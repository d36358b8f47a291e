"""Error-log operations: list failed changes and refused F&O events, resubmit one, discard one.

The error log is error-log rows joined with the broker's dead-letters of two queues:

- rows: what apply wrote (category, full target error text, attempts) and F&O events from the
  fno-events queue that could not be parsed (operation `ingest`, recorded at once by the trigger);
- dead-letters of the `changes` queue and of the `fno-events` queue (`DeadLetterSource`). A dead-letter
  with no row (its TTL ran out, a worker crashed mid-change, the changes queue was unreachable for every
  delivery of an F&O event) still shows, as category "system" with the broker's reason as its text, and
  can be resubmitted or discarded like any other: its row is written from the dead-letter first.

Resubmitting a change sends it again to the changes queue; resubmitting an `ingest` entry runs the
ingest again on the stored raw F&O body (parse, route, enqueue), so a fixed map or parser takes it;
resubmitting a `vt_notify` entry (a virtual table's F&O event notification Dataverse refused) puts its
row back in that outbox (core.virtual.events), told at the next run.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from core.events.errors import PayloadError
from core.events.fno import parse_fno
from core.events.model import ChangeEvent
from core.maps import MapSet
from core.store.deadletters import DeadLetter, DeadLetters
from core.store.errors import ErrorEntry, ErrorLog, ErrorNotFound
from core.store.queues import ChangeQueue, QueuedChange
from core.sync.ingest import DEFAULT_BUCKETS, ingest

__all__ = [
    "DeadLetterSource", "ErrorNotFound", "ErrorNotOpen", "Resubmitted", "discard", "get_error", "list_errors",
    "record_refused_fno_event", "resubmit",
]

_DEAD_LETTER_SCAN = 1000
_RESUBMIT_SUFFIX = re.compile(r"^(?P<base>.*)\|resubmit-(?P<n>\d+)$")
INGEST = "ingest"  # the operation of entries holding a raw F&O body rather than a change event
VT_NOTIFY = "vt_notify"  # a virtual table's F&O event notification set aside (core.virtual.events)
UNKNOWN_MAP = "unknown"  # the map of an F&O event that could not be read far enough to tell
FNO_EVENTS_PREFIX = "fno-events:"  # error ids of fno-events messages: never the same as a change's id


class NotResubmittable(ValueError):
    """The entry holds no change event to send again (a row written by hand, an older format)."""


class ErrorNotOpen(Exception):
    """The error was already resubmitted or discarded."""

    def __init__(self, id: str, status: str) -> None:
        self.status = status
        super().__init__(f"error {id!r} is {status}, not open")


@dataclass(frozen=True)
class DeadLetterSource:
    """One queue's dead-letters as error-log entries: what the queue carries says how to read them.

    `changes` queues carry change events; `fno_events` queues carry raw F&O bodies, listed under
    `fno-events:<message id>` (the id the trigger records a refused event under, so a message that was
    both recorded and dead-lettered shows once).
    """

    letters: DeadLetters
    carries: Literal["changes", "fno_events"]

    @property
    def prefix(self) -> str:
        return FNO_EVENTS_PREFIX if self.carries == "fno_events" else ""

    def entry(self, letter: DeadLetter) -> ErrorEntry:
        if self.carries == "fno_events":
            return from_fno_events_dead_letter(letter)
        return from_dead_letter(letter)

    def message_id(self, id: str) -> str | None:
        """The broker's message id of error `id` in this queue; None when the id is not of this queue."""
        if self.carries == "fno_events":
            return id[len(FNO_EVENTS_PREFIX):] if id.startswith(FNO_EVENTS_PREFIX) else None
        return None if id.startswith(FNO_EVENTS_PREFIX) else id


def _broker_text(dead: DeadLetter) -> str:
    return ": ".join(part for part in (dead.reason, dead.description) if part) or "dead-lettered without a reason"


def from_dead_letter(dead: DeadLetter) -> ErrorEntry:
    """An error-log entry for a dead-letter of the changes queue nobody recorded (TTL expiry, a crash)."""
    props = dead.properties
    map_name, source, operation = props.get("map", ""), props.get("source", ""), props.get("operation", "")
    try:
        event = ChangeEvent.from_json(dead.body)
        map_name, source, operation = event.map or map_name, event.source, event.operation
    except ValueError:
        pass  # not a change event: show what the broker knows
    at = dead.enqueued_at or datetime.now(UTC)
    return ErrorEntry(
        id=dead.message_id, map=map_name, key=dead.session_id or "", source=source, operation=operation,
        category="system", text=_broker_text(dead), attempts=dead.delivery_count, change=dead.body,
        session_id=dead.session_id or "", first_at=at, last_at=at,
    )


def fno_events_error_id(message_id: str) -> str:
    return FNO_EVENTS_PREFIX + message_id


def from_fno_events_dead_letter(dead: DeadLetter) -> ErrorEntry:
    """An error-log entry for an F&O event the fno-events queue dead-lettered (every delivery failed)."""
    at = dead.enqueued_at or datetime.now(UTC)
    return ErrorEntry(
        id=fno_events_error_id(dead.message_id), map=UNKNOWN_MAP, key="", source="fno", operation=INGEST,
        category="system", text=_broker_text(dead), attempts=dead.delivery_count, change=dead.body,
        session_id="", first_at=at, last_at=at,
    )


async def record_refused_fno_event(errors: ErrorLog, *, message_id: str, body: bytes, error: PayloadError,
                                   attempts: int) -> ErrorEntry:
    """Record an fno-events message that cannot become change events (sending it again cannot help).

    Keyed by the message id, so a redelivery of the same message updates the one entry.
    """
    now = datetime.now(UTC)
    return await errors.record(ErrorEntry(
        id=fno_events_error_id(message_id), map=UNKNOWN_MAP, key="", source="fno", operation=INGEST,
        category="application", text=str(error), attempts=attempts, change=body.decode("utf-8", "replace"),
        session_id="", first_at=now, last_at=now,
    ))


async def list_errors(
    errors: ErrorLog, dead: Sequence[DeadLetterSource], *, map: str | None = None, status: str | None = "open",
    category: str | None = None, limit: int = 100,
) -> list[ErrorEntry]:
    """Error-log rows plus dead-letters (of every source) without a row, newest failure first."""
    rows = await errors.list(map=map, status=status, category=category, limit=limit)
    if status in (None, "open") and category in (None, "system"):
        known = {row.id for row in rows}
        for source in dead:
            for letter in await source.letters.peek(_DEAD_LETTER_SCAN):
                entry = source.entry(letter)
                if entry.id in known or await errors.get(entry.id) is not None:
                    continue
                if map is None or entry.map == map:
                    known.add(entry.id)
                    rows.append(entry)
    rows.sort(key=lambda e: e.last_at, reverse=True)
    return rows[:limit]


async def _find_dead_letter(id: str, dead: Sequence[DeadLetterSource]) -> tuple[DeadLetterSource, DeadLetter] | None:
    for source in dead:
        message_id = source.message_id(id)
        if message_id is not None and (letter := await source.letters.find(message_id)) is not None:
            return source, letter
    return None


async def get_error(id: str, errors: ErrorLog, dead: Sequence[DeadLetterSource]) -> ErrorEntry:
    """One entry: its row, else its dead-letter as an entry (nothing written). ErrorNotFound otherwise."""
    entry = await errors.get(id)
    if entry is not None:
        return entry
    found = await _find_dead_letter(id, dead)
    if found is None:
        raise ErrorNotFound(f"no error with id {id!r}")
    source, letter = found
    return source.entry(letter)


async def _open_entry(id: str, errors: ErrorLog, dead: Sequence[DeadLetterSource]) -> ErrorEntry:
    entry = await errors.get(id)
    if entry is None:
        found = await _find_dead_letter(id, dead)
        if found is None:
            raise ErrorNotFound(f"no error with id {id!r}")
        source, letter = found
        entry = await errors.record(source.entry(letter))
    if entry.status != "open":
        raise ErrorNotOpen(id, entry.status)
    return entry


async def _take_dead_letter(id: str, dead: Sequence[DeadLetterSource]) -> None:
    for source in dead:
        message_id = source.message_id(id)
        if message_id is not None and await source.letters.take(message_id) is not None:
            return


def resubmit_id(id: str) -> str:
    """The message id of the next resubmission: `<id>|resubmit-<n>`, counting on from an earlier one
    (the broker's duplicate detection would drop a message sent again under its old id)."""
    match = _RESUBMIT_SUFFIX.match(id)
    if match is None:
        return f"{id}|resubmit-1"
    return f"{match['base']}|resubmit-{int(match['n']) + 1}"


@dataclass(frozen=True)
class Resubmitted:
    """What a resubmission put on the changes queue: `message_id` of a change sent again (None for an
    ingest run again, whose messages carry the ingest's own ids), `accepted` messages in all."""

    message_id: str | None
    accepted: int


async def resubmit(id: str, *, errors: ErrorLog, dead: Sequence[DeadLetterSource], queue: ChangeQueue,
                   maps: MapSet, buckets: int = DEFAULT_BUCKETS) -> Resubmitted:
    """Send the failed change again (new message id, same session), or run the ingest of a refused F&O
    event again. Raises PayloadError when the F&O body still cannot be parsed (the entry stays open),
    NotResubmittable when a change entry holds no change event."""
    entry = await _open_entry(id, errors, dead)
    if entry.operation == INGEST:
        # Parsed and routed before anything is sent: a body that still fails leaves the entry as it is.
        parsed = parse_fno(entry.change.encode("utf-8"), maps)
        result = await ingest(parsed.events, maps, queue, buckets=buckets)
        sent = Resubmitted(message_id=None, accepted=result.accepted)
    elif entry.operation == VT_NOTIFY:
        from core.virtual.events import restore  # here: core.virtual.events imports this module

        await restore(errors.tables, entry.change)  # ValueError (the entry stays open) when it is no outbox row
        sent = Resubmitted(message_id=None, accepted=1)
    else:
        try:
            event = ChangeEvent.from_json(entry.change)
        except ValueError as exc:
            raise NotResubmittable(f"error {id!r}: its change is not a change event and cannot be resubmitted: "
                             f"{exc}") from None
        new_id = resubmit_id(id)
        # Sent first: if a later step fails, a retry computes the same new id and the broker drops the copy.
        await queue.send([QueuedChange(event=event, session_id=entry.session_id, message_id=new_id,
                                       properties={"resubmit_of": id})])
        sent = Resubmitted(message_id=new_id, accepted=1)
    await _take_dead_letter(id, dead)
    await errors.set_status(id, "resubmitted")
    return sent


async def discard(id: str, *, errors: ErrorLog, dead: Sequence[DeadLetterSource]) -> None:
    """Give up on the failed change: mark it discarded and drop its dead-letter."""
    await _open_entry(id, errors, dead)
    await _take_dead_letter(id, dead)
    await errors.set_status(id, "discarded")


BULK_LIMIT = 1000  # entries one bulk action takes at most; the rest is left for the next call
_BULK_AT_ONCE = 8


@dataclass(frozen=True)
class BulkOutcome:
    """What a bulk resubmit or discard did: the ids it acted on, and those it could not (with why)."""

    done: list[str]
    failed: list[tuple[str, str]]


async def _matching(errors: ErrorLog, dead: Sequence[DeadLetterSource], *, map: str | None, category: str | None,
                    ids: Sequence[str] | None, limit: int) -> list[str]:
    if ids:
        return list(dict.fromkeys(ids))[:limit]
    return [e.id for e in await list_errors(errors, dead, map=map, status="open", category=category, limit=limit)]


async def _each(ids: list[str], act: Callable[[str], Awaitable[object]]) -> BulkOutcome:
    gate = asyncio.Semaphore(_BULK_AT_ONCE)
    done: list[str] = []
    failed: list[tuple[str, str]] = []

    async def one(id: str) -> None:
        async with gate:
            try:
                await act(id)
            except (ErrorNotFound, ErrorNotOpen, PayloadError, ValueError) as error:  # this entry only
                failed.append((id, str(error)))
            else:
                done.append(id)

    await asyncio.gather(*(one(id) for id in ids))
    return BulkOutcome(done=done, failed=failed)


async def resubmit_matching(*, errors: ErrorLog, dead: Sequence[DeadLetterSource], queue: ChangeQueue, maps: MapSet,
                            buckets: int = DEFAULT_BUCKETS, map: str | None = None, category: str | None = None,
                            ids: Sequence[str] | None = None, limit: int = BULK_LIMIT) -> BulkOutcome:
    """Resubmit the open entries named by `ids`, else those of `map` and `category` (newest first, at most
    `limit`). An entry that cannot be resubmitted is reported and stays as it is; the others go."""
    chosen = await _matching(errors, dead, map=map, category=category, ids=ids, limit=limit)
    return await _each(chosen, lambda id: resubmit(id, errors=errors, dead=dead, queue=queue, maps=maps,
                                                   buckets=buckets))


async def discard_matching(*, errors: ErrorLog, dead: Sequence[DeadLetterSource], map: str | None = None,
                           category: str | None = None, ids: Sequence[str] | None = None,
                           limit: int = BULK_LIMIT) -> BulkOutcome:
    """Discard the open entries named by `ids`, else those of `map` and `category` (at most `limit`)."""
    chosen = await _matching(errors, dead, map=map, category=category, ids=ids, limit=limit)
    return await _each(chosen, lambda id: discard(id, errors=errors, dead=dead))
