"""JSON that keeps money exact: Decimals travel as JSON numbers with every digit, never via float."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

_MARK = "\x00dec:"


def _prepare(value: Any) -> Any:
    # json cannot write a number it did not make, so decimals become marked strings, unquoted after.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as a JSON number")
        return f"{_MARK}{format(value, 'f')}"
    if isinstance(value, str) and value.startswith(_MARK):
        raise ValueError("a string starting with NUL + 'dec:' cannot be sent")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: datetimes must be timezone-aware UTC")
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _prepare(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    return value


def dumps(obj: Any, *, indent: int | None = None) -> bytes:
    """Compact JSON on the wire; `indent` for people (a map definition shown by the CLI)."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(_prepare(obj), ensure_ascii=False, separators=separators, indent=indent)
    # The marker starts with NUL (json writes \u0000) and strings carrying it are refused, so none can forge it.
    return _unmark(text).encode()


def _unmark(text: str) -> str:
    marker = '"\\u0000dec:'
    out: list[str] = []
    start = 0
    while (at := text.find(marker, start)) >= 0:
        end = text.index('"', at + len(marker))
        out.append(text[start:at])
        out.append(text[at + len(marker):end])
        start = end + 1
    out.append(text[start:])
    return "".join(out)


def loads(data: bytes | str) -> Any:
    return json.loads(data, parse_float=Decimal)
