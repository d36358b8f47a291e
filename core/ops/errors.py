"""Error-log operations: list failed changes, resubmit one, discard one.

The error log is two things joined: rows the apply step wrote (category, full target error text,
attempts) and the broker's dead-letter queue. A dead-letter with no row (its TTL ran out, a worker
crashed mid-change) still shows, as category "system" with the broker's reason as its text, and can be
resubmitted or discarded like any other: its row is written from the dead-letter first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from core.events.model import ChangeEvent
from core.store.deadletters import DeadLetter, DeadLetters
from core.store.errors import ErrorEntry, ErrorLog, ErrorNotFound
from core.store.queues import ChangeQueue, QueuedChange

__all__ = ["ErrorNotFound", "ErrorNotOpen", "discard", "list_errors", "resubmit"]

_DEAD_LETTER_SCAN = 1000
_RESUBMIT_SUFFIX = re.compile(r"^(?P<base>.*)\|resubmit-(?P<n>\d+)$")


class ErrorNotOpen(Exception):
    """The error was already resubmitted or discarded."""

    def __init__(self, id: str, status: str) -> None:
        self.status = status
        super().__init__(f"error {id!r} is {status}, not open")


def from_dead_letter(dead: DeadLetter) -> ErrorEntry:
    """An error-log entry for a dead-letter nobody recorded (TTL expiry, a crash)."""
    props = dead.properties
    map_name, source, operation = props.get("map", ""), props.get("source", ""), props.get("operation", "")
    try:
        event = ChangeEvent.from_json(dead.body)
        map_name, source, operation = event.map or map_name, event.source, event.operation
    except ValueError:
        pass  # not a change event: show what the broker knows
    at = dead.enqueued_at or datetime.now(UTC)
    text = ": ".join(part for part in (dead.reason, dead.description) if part) or "dead-lettered without a reason"
    return ErrorEntry(
        id=dead.message_id, map=map_name, key=dead.session_id or "", source=source, operation=operation,
        category="system", text=text, attempts=dead.delivery_count, change=dead.body,
        session_id=dead.session_id or "", first_at=at, last_at=at,
    )


async def list_errors(
    errors: ErrorLog, dead: DeadLetters, *, map: str | None = None, status: str | None = "open",
    category: str | None = None, limit: int = 100,
) -> list[ErrorEntry]:
    """Error-log rows plus dead-letters without a row, newest failure first."""
    rows = await errors.list(map=map, status=status, category=category, limit=limit)
    if status in (None, "open") and category in (None, "system"):
        known = {row.id for row in rows}
        for letter in await dead.peek(_DEAD_LETTER_SCAN):
            if letter.message_id in known or await errors.get(letter.message_id) is not None:
                continue
            entry = from_dead_letter(letter)
            if map is None or entry.map == map:
                rows.append(entry)
    rows.sort(key=lambda e: e.last_at, reverse=True)
    return rows[:limit]


async def _open_entry(id: str, errors: ErrorLog, dead: DeadLetters) -> ErrorEntry:
    entry = await errors.get(id)
    if entry is None:
        letter = await dead.find(id)
        if letter is None:
            raise ErrorNotFound(f"no error with id {id!r}")
        entry = await errors.record(from_dead_letter(letter))
    if entry.status != "open":
        raise ErrorNotOpen(id, entry.status)
    return entry


def resubmit_id(id: str) -> str:
    """The message id of the next resubmission: `<id>|resubmit-<n>`, counting on from an earlier one
    (the broker's duplicate detection would drop a message sent again under its old id)."""
    match = _RESUBMIT_SUFFIX.match(id)
    if match is None:
        return f"{id}|resubmit-1"
    return f"{match['base']}|resubmit-{int(match['n']) + 1}"


async def resubmit(id: str, *, errors: ErrorLog, dead: DeadLetters, queue: ChangeQueue) -> str:
    """Send the failed change again (new message id, same session); returns the new message id."""
    entry = await _open_entry(id, errors, dead)
    try:
        event = ChangeEvent.from_json(entry.change)
    except ValueError as exc:
        raise ValueError(f"error {id!r}: its change is not a change event and cannot be resubmitted: {exc}") from None
    new_id = resubmit_id(id)
    # Sent first: if a later step fails, a retry computes the same new id and the broker drops the copy.
    await queue.send([QueuedChange(event=event, session_id=entry.session_id, message_id=new_id,
                                   properties={"resubmit_of": id})])
    await dead.take(id)
    await errors.set_status(id, "resubmitted")
    return new_id


async def discard(id: str, *, errors: ErrorLog, dead: DeadLetters) -> None:
    """Give up on the failed change: mark it discarded and drop its dead-letter."""
    await _open_entry(id, errors, dead)
    await dead.take(id)
    await errors.set_status(id, "discarded")

