"""Value types of mapped fields and their canonical Python form.

Every value that crosses a map is normalised to one canonical form per type, so projection,
hashing and comparison never depend on how a payload happened to spell it: Decimal for money
and quantities (never float: a float cannot carry 10 decimal places without loss), aware UTC
datetimes, dates, ints, bools, enum symbols as str, choices as int, guids as lower-case str.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ValueType = Literal["string", "integer", "decimal", "boolean", "date", "datetime", "enum", "choice", "guid"]


class MapValueError(ValueError):
    """A value does not fit its declared type or a transform; terminal for the record (bad data)."""


def coerce(value_type: ValueType, value: Any) -> Any:
    """The canonical form of `value` as `value_type`; None stays None."""
    if value is None:
        return None
    if isinstance(value, float):
        raise MapValueError(f"float {value!r} is not accepted for {value_type}: parse JSON with Decimal")
    match value_type:
        case "string" | "enum":
            if isinstance(value, str):
                return value
        case "integer" | "choice":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, Decimal) and value == value.to_integral_value():
                return int(value)
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
        case "decimal":
            return _decimal(value)
        case "boolean":
            if isinstance(value, bool):
                return value
        case "date":
            return _date(value)
        case "datetime":
            return _datetime(value)
        case "guid":
            if isinstance(value, uuid.UUID):
                return str(value)
            if isinstance(value, str):
                try:
                    return str(uuid.UUID(value.strip("{}")))
                except ValueError:
                    pass
    raise MapValueError(f"{value!r} is not a valid {value_type}")


def type_of_literal(value: Any) -> ValueType | None:
    """The value type a JSON literal in a map file naturally has (for constants and value maps)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, str):
        return "string"
    return None


def compatible(declared: ValueType, literal: Any) -> bool:
    """Whether a literal from a map file can stand for a value of `declared` type."""
    try:
        coerce(declared, literal)
    except MapValueError:
        return False
    return True


def _decimal(value: Any) -> Decimal:
    result: Decimal | None = None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            result = None
    if result is None or not result.is_finite():
        raise MapValueError(f"{value!r} is not a valid decimal")
    return result


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        # A date written as a moment: its day where it was written (the writer's offset), else in UTC. F&O's OData
        # writes a date as Edm.DateTimeOffset at 12:00 UTC (so no time zone moves its day), others write midnight;
        # any other time of day is a datetime, not a date.
        if value.tzinfo is None or value.utcoffset() is None:
            raise MapValueError(f"{value.isoformat()} has no time zone: datetimes must be timezone-aware")
        for moment in (value, value.astimezone(UTC)):
            if moment.time() in (time(0, 0), time(12, 0)):
                return moment.date()
        raise MapValueError(f"{value.isoformat()} is not a date (has a time of day)")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        else:
            # F&O sends dates as Edm.DateTimeOffset (at 12:00 UTC), its events as /Date(ms)/.
            return _date(_moment(text))
    raise MapValueError(f"{value!r} is not a valid date")


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, str):
        return _as_utc(_moment(value))
    raise MapValueError(f"{value!r} is not a valid datetime (ISO 8601 with a time zone)")


# `/Date(ms)/` or `/Date(ms+hhmm)/`: how F&O business events and the Dataverse execution context write a moment
# (the ms count from 1970-01-01 UTC; the offset says where it was written).
_WCF_DATE = re.compile(r"^/Date\((-?\d+)(?:([+-])(\d{2})(\d{2}))?\)/$")


def wcf_moment(text: str) -> datetime | None:
    """`/Date(ms)/` or `/Date(ms+hhmm)/` as an aware datetime in the zone it was written in (the same instant in UTC
    either way); None when `text` is not in that form; MapValueError when it is out of range."""
    wcf = _WCF_DATE.match(text)
    if wcf is None:
        return None
    ms, sign, hours, minutes = wcf.groups()
    offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0)) * (-1 if sign == "-" else 1)
    try:
        moment = _EPOCH + timedelta(milliseconds=int(ms))
    except (OverflowError, ValueError):
        raise MapValueError(f"{text[:40]!r} is out of range (years 1 to 9999)") from None
    try:
        return moment.astimezone(timezone(offset))
    except (OverflowError, ValueError):  # an offset of a day or more, or year 1 or 9999 pushed out of range by it:
        return moment  # the ms are UTC whatever the offset says, so the instant stands


def _moment(text: str) -> datetime:
    """An ISO 8601 text with a time zone, or `/Date(ms)/`, as an aware datetime in the zone it was written in."""
    text = text.strip()
    wcf = wcf_moment(text)
    if wcf is not None:
        return wcf
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MapValueError(f"{text!r} is not a valid datetime (ISO 8601 with a time zone)") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise MapValueError(f"{parsed.isoformat()} has no time zone: datetimes must be timezone-aware")
    return parsed


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise MapValueError(f"{value.isoformat()} has no time zone: datetimes must be timezone-aware")
    return value.astimezone(UTC)
