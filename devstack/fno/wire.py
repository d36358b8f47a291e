"""JSON on the wire without floats, and the date/GUID spellings F&O uses.

The standard library cannot write a Decimal as a JSON number without going through float, and F&O
amounts must survive 10 decimals untouched, so the writer below is our own (small and recursive).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_encode_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def decimal_text(value: Decimal) -> str:
    """Plain positional notation (no exponent), trailing zeros dropped: 25000, 0.1234567891."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def dumps(value: Any, *, decimals_as_strings: bool = False) -> str:
    """JSON text; Decimal becomes a number (or a string when IEEE754Compatible was asked for)."""
    parts: list[str] = []
    _write(value, parts, decimals_as_strings)
    return "".join(parts)


def _write(value: Any, out: list[str], dec_str: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, Decimal):
        text = decimal_text(value)
        out.append(_encode_str(text) if dec_str else text)
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_encode_str(str(k)))
            out.append(":")
            _write(v, out, dec_str)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _write(v, out, dec_str)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping every non-integer number as a Decimal."""
    return json.loads(text, parse_float=Decimal)


def ms_date(moment: datetime | date) -> str:
    """`/Date(ms)/`: milliseconds since the epoch, UTC (the WCF DataContract form F&O events use)."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)})/"


def iso_7(moment: datetime) -> str:
    """ISO 8601 with 7 fractional digits and Z, as in EventTimeIso8601."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def braced_guid(value: uuid.UUID | str) -> str:
    """`{410A2690-5EC2-42EE-9F2A-E75B4E324930}`: braces, upper case, as InitiatingUserAADObjectId."""
    return "{" + str(uuid.UUID(str(value))).upper() + "}"
