"""Typed values of virtual table columns: from a request body (JSON) in, and the one canonical text of a key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core.errors import BadInput
from core.virtual.filter import parse_datetime
from core.virtual.model import Column


def from_json(column: Column, value: Any, field: str | None = None) -> Any:
    """A JSON body value (numbers with a fraction arrive as Decimal) as the column's Python value, or a BadInput
    naming the property. Money stays Decimal all the way; datetimes become timezone-aware UTC."""
    name = field or column.name

    def wrong(expected: str) -> BadInput:
        return BadInput(name, f"{name} must be {expected} ({column.type}), not {str(value)[:60]!r}")

    if value is None:
        if not column.nullable:
            raise BadInput(name, f"{name} is required (Nullable=false) and cannot be null")
        return None
    match column.type:
        case "Edm.String":
            if not isinstance(value, str):
                raise wrong("text")
            if column.max_length is not None and len(value) > column.max_length:
                raise BadInput(name, f"{name} is {len(value)} characters long; at most {column.max_length} fit")
            return value
        case "Edm.Boolean":
            if not isinstance(value, bool):
                raise wrong("true or false")
            return value
        case "Edm.Int32" | "Edm.Int64":
            whole = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(value, str) and value.lstrip("-").isdigit():  # IEEE754Compatible clients send Int64 text
                value, whole = int(value), True
            bits = 31 if column.type == "Edm.Int32" else 63
            if not whole or not -(2**bits) <= value < 2**bits:
                raise wrong("a whole number in range")
            return value
        case "Edm.Decimal":
            if isinstance(value, bool) or not isinstance(value, int | Decimal | str | float):
                raise wrong("a number")
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                raise wrong("a number") from None
            if not number.is_finite():
                raise wrong("a finite number")
            if column.scale is not None and number != number.quantize(Decimal(1).scaleb(-column.scale)):
                raise BadInput(name, f"{name} has more than {column.scale} digits after the point")
            return number
        case "Edm.Double":
            if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
                raise wrong("a number")
            return float(value)
        case "Edm.Guid":
            try:
                return uuid.UUID(str(value))
            except ValueError:
                raise wrong("a GUID") from None
        case "Edm.DateTimeOffset" | "Edm.DateTime":
            if not isinstance(value, str):
                raise wrong("an ISO 8601 date and time")
            return parse_datetime(value, lambda: wrong("an ISO 8601 date and time"))
    raise wrong(column.type)


def key_text(value: Any) -> str:
    """One text per key value, whatever source it came from: what a derived GUID is made of."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
