"""What can go wrong while applying a change, as the error log names it.

Two families, dlt style: transient failures are retried (with backoff, then the error log) and
permanent ones go to the error log at once, without burning retries. `category` is the error
log's category; `category_of` maps any exception (connector errors included) to one.
"""

from __future__ import annotations

from core.connectors.errors import (
    AuthFailed,
    ConflictError,
    ConnectorError,
    ThrottledError,
    TransientError,
)
from core.maps import MapValueError
from core.maps.filters import FilterError
from core.store.errors import Category
from core.store.links import LinkTooLarge


class SyncError(Exception):
    """Base of the engine's own failures."""

    category: Category = "application"
    transient = False


class LookupPending(SyncError):
    """A referenced row (a lookup's parent) does not exist on the target yet: retried later, since
    parents usually arrive on their own (another map's change in flight)."""

    category = "lookup_pending"
    transient = True

    def __init__(self, map_name: str, field: str, reference: str) -> None:
        super().__init__(f"map {map_name!r}, lookup {field!r}: the referenced row {reference} does not exist "
                         "on the target yet")
        self.map_name = map_name
        self.field = field


class ConflictSkipped(SyncError):
    """Both sides changed the record; the map's conflict policy kept the target's version."""

    category = "conflict"


class TargetGone(SyncError):
    """The linked row was deleted on the target while this change was on its way. Its delete event
    is usually right behind and takes the record away on this side too, so the change waits for it
    (retried) instead of bringing the row back; only the last attempt writes it again."""

    category = "conflict"
    transient = True

    def __init__(self, map_name: str, side_name: str, record: str) -> None:
        super().__init__(f"map {map_name!r}: the linked {side_name} record {record} no longer exists (deleted "
                         "there); waiting for its delete to sync before writing the record again")


class LinkContention(SyncError):
    """The link row kept changing under us (both sides' changes of one record at once)."""

    category = "system"
    transient = True


class NotOnline(SyncError):
    """A change an online (synchronous) step cannot apply inside the user's Dataverse save: it would have to
    read or write the very Dataverse row being saved (a re-read, a write-back), which waits on that save. It
    goes the asynchronous way instead."""

    category = "system"
    transient = True


class BadChange(SyncError):
    """The queued change itself cannot be read (not a change event, unknown map)."""

    category = "application"


def is_transient(error: BaseException) -> bool:
    if isinstance(error, SyncError):
        return error.transient
    if isinstance(error, ConnectorError):
        return isinstance(error, TransientError)
    # Anything unexpected (a bug, a dropped connection outside the connectors) is retried: the
    # change is kept, and after the last attempt it lands in the error log with its text.
    return not isinstance(error, MapValueError | FilterError | LinkTooLarge)


def category_of(error: BaseException) -> Category:
    if isinstance(error, SyncError):
        return error.category
    if isinstance(error, ThrottledError):
        return "throttled"
    if isinstance(error, ConflictError):
        return "conflict"
    if isinstance(error, TransientError | AuthFailed):
        return "system"
    if isinstance(error, ConnectorError | MapValueError | FilterError | LinkTooLarge):
        return "application"
    return "system"


def error_text(error: BaseException) -> str:
    """The full text for the error log: the target's whole answer when there is one."""
    if isinstance(error, ConnectorError):
        head = f"{error.method} {error.url} -> HTTP {error.status}" if error.status else f"{error.method} {error.url}"
        return f"{head}: {error.message}\n\n{error.text}".rstrip()
    return f"{type(error).__name__}: {error}"
