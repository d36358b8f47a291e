"""Date-effective rows: a map's validity window and the primary flag it governs.

F&O keeps postal addresses (and party names) date-effective: a row is valid from `valid_from` until
`valid_to` (open when empty), and a new address can be entered today to replace the current one on a future
date. A map with a `validity` sends the row's primary flag to Dataverse as "primary now": true only while
the row is valid. So a future-dated primary address arrives as not primary and becomes primary on its date,
and the address it replaces stops being primary on the same date, without a user touching either row.

What changes on a date is found by `crossed`/`boundary_filter`: the rows whose window opened or closed
between two instants are the ones to send again. The clock is `now()`, which tests replace with
`use_clock`. Values are the canonical ones of `core.maps.values` (aware UTC datetimes, dates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Any

from core.maps.model import TableMap, Validity
from core.maps.values import MapValueError, coerce

_clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current instant for validity decisions (aware UTC)."""
    return _clock()


@contextmanager
def use_clock(clock: Callable[[], datetime]) -> Iterator[None]:
    """Decide validity by `clock` inside the block (tests inject a date with this)."""
    global _clock
    previous = _clock
    _clock = clock
    try:
        yield
    finally:
        _clock = previous


def _instant(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = coerce("datetime", value)
        except MapValueError:
            value = coerce("date", value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise MapValueError(f"{field} {value!r} has no time zone")
        instant = value.astimezone(UTC)
    elif isinstance(value, date):
        instant = datetime.combine(value, time(), UTC)
    else:
        raise MapValueError(f"{field} {value!r} is not a date or a datetime")
    # F&O's empty utcdatetime (1900-01-01) means "no date": open on that end.
    return None if instant.year <= 1900 else instant


def window(validity: Validity, record: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The (from, to) instants of an F&O record; None for an open end."""
    start = _instant(record.get(validity.valid_from), validity.valid_from)
    end = _instant(record.get(validity.valid_to), validity.valid_to) if validity.valid_to else None
    return start, end


def is_current(validity: Validity, record: Mapping[str, Any], at: datetime) -> bool:
    """Whether an F&O record is valid at `at`: from <= at < to."""
    start, end = window(validity, record)
    return (start is None or start <= at) and (end is None or at < end)


def knows_window(validity: Validity, record: Mapping[str, Any]) -> bool:
    """Whether a record (possibly a partial change) carries its validity fields, so it can be judged."""
    return validity.valid_from in record and (validity.valid_to is None or validity.valid_to in record)


def crossed(validity: Validity, record: Mapping[str, Any], since: datetime, until: datetime) -> bool:
    """Whether the record's window opened or closed in (since, until]: its primary flag changed meaning."""
    return any(edge is not None and since < edge <= until for edge in window(validity, record))


def boundary_filter(table_map: TableMap, since: datetime, until: datetime) -> str:
    """An OData $filter on the F&O entity for the rows whose window opened or closed in (since, until]."""
    validity = table_map.validity
    if validity is None:
        raise ValueError(f"map {table_map.name!r} has no validity")
    lo, hi = (t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (since, until))
    parts = [f"({validity.valid_from} gt {lo} and {validity.valid_from} le {hi})"]
    if validity.valid_to:
        parts.append(f"({validity.valid_to} gt {lo} and {validity.valid_to} le {hi})")
    return " or ".join(parts)
