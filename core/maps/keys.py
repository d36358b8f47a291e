"""Integration keys: which row a record is, in a form both sides agree on.

The canonical key of a record is its company code (upper case, for company-specific maps)
followed by the other key parts in the F&O key order, each as text. Both sides of a map
produce the same canonical key for the same row, so it identifies the link between them.
`encode_key` makes it safe as an Azure Table Storage RowKey (no / \\ # ? or control
characters) and `decode_key` reverses it exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from core.maps.convert import convert, field_types
from core.maps.model import Side, TableMap
from core.maps.transforms import TransformTypeError
from core.maps.values import MapValueError, coerce

_SEPARATOR = "|"
_ESCAPE = "%"


@dataclass(frozen=True)
class KeyRef:
    """A reference to a row of `map` by that side's integration key: `values` are
    (key part, value) pairs in the key's order, e.g. (("msdyn_company.cdm_companycode", "USMF"),
    ("msdyn_groupid", "30")). Projected lookups carry these; apply binds them."""

    map: str
    side: Side
    values: tuple[tuple[str, Any], ...]

    def get(self, part: str) -> Any:
        return dict(self.values).get(part)


def key_text(value: Any) -> str:
    """One key part as text, the same whichever side or payload format it came from."""
    if value is None:
        raise MapValueError("a key part is empty")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, datetime):
        # One moment, one text: whichever offset a side wrote it in, the key holds it in UTC.
        if value.tzinfo is None or value.utcoffset() is None:
            raise MapValueError(f"datetime {value.isoformat()} has no time zone")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date | int | str):
        return value.isoformat() if isinstance(value, date) else str(value)
    raise MapValueError(f"{value!r} cannot be part of a key")


def decimal_text(value: Decimal) -> str:
    """Shortest exact text of a decimal: 25000.00 and 25000 are the same amount."""
    if value == 0:
        return "0"
    sign, digits, exponent = value.as_tuple()
    text = "".join(map(str, digits))
    if isinstance(exponent, int) and exponent < 0:
        text = text.rjust(-exponent + 1, "0")
        text = (text[:exponent] + "." + text[exponent:]).rstrip("0").rstrip(".")
    elif isinstance(exponent, int):
        text += "0" * exponent
    return ("-" if sign else "") + text


def company_code(table_map: TableMap, side: Side, record: Mapping[str, Any]) -> str | None:
    """The record's company code in canonical (upper) case, or None when the record lacks it.
    Dataverse records may carry the company lookup as a code, a KeyRef or a {column: code}
    mapping, or as the dotted key part itself (msdyn_company.cdm_companycode)."""
    company = table_map.company
    if company is None:
        return None
    if side == "fno":
        value = record.get(company.fno)
    else:
        dotted = next(k for k in table_map.dataverse.key if k.split(".")[0] == company.dataverse)
        value = record.get(dotted, record.get(company.dataverse))
        if isinstance(value, KeyRef):
            value = value.values[-1][1] if value.values else None
        elif isinstance(value, Mapping):
            value = value.get(dotted.split(".", 1)[-1])
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MapValueError(f"company {value!r} is not a company code")
    return value.upper()


def record_key(table_map: TableMap, side: Side, record: Mapping[str, Any]) -> tuple[str, ...]:
    """The canonical integration key of a record read on `side`."""
    parts: list[str] = []
    if table_map.company is not None:
        code = company_code(table_map, side, record)
        if code is None:
            name = table_map.company.fno if side == "fno" else table_map.company.dataverse
            raise MapValueError(f"map {table_map.name!r}: the record has no company ({name})")
        parts.append(code)
    return (*parts, *order_key(table_map, side, record))


def order_key(table_map: TableMap, side: Side, record: Mapping[str, Any]) -> tuple[str, ...]:
    """The integration key without its company part: what both sides' events of one record show
    without a read (a Dataverse event names its company by row id, not by code). One record's
    changes from either side are serialised on it (session bucket, apply lane); two companies'
    records with the same number merely share a lane."""
    parts: list[str] = []
    for fno_key, dv_key in table_map.key_pairs():
        name = fno_key if side == "fno" else dv_key
        if record.get(name) is None:
            raise MapValueError(f"map {table_map.name!r}: the record has no value for key field {name!r}")
        mapping = next(f for f in table_map.fields if f.fno == fno_key and f.dataverse == dv_key)
        try:
            # Both sides spell the key in its F&O form, so a key behind an invertible transform
            # (a value map, say) still gives one canonical key.
            if side == "dataverse":
                value = convert(mapping, "to_fno", record[name])
            else:
                value = coerce(field_types(mapping)[0], record[name])
        except (MapValueError, TransformTypeError) as error:
            raise MapValueError(f"map {table_map.name!r}, key field {name!r}: {error}") from None
        parts.append(key_text(value))
    return tuple(parts)


def typed_key(table_map: TableMap, side: Side, key: Mapping[str, Any]) -> dict[str, Any]:
    """An entity key (F&O) or alternate key (Dataverse) with each mapped key part in its field's Python type, for the
    connectors to render as the literal that type takes in a URL: a date key part may arrive as text (a canonical
    key, a link's stored key, a row read from the wire) and must not be quoted like a string. Parts that are not
    mapped fields (the company) pass unchanged; a value that does not fit its type is a MapValueError naming it."""
    out: dict[str, Any] = {}
    for name, value in key.items():
        mapping = next((f for f in table_map.fields if (f.fno if side == "fno" else f.dataverse) == name), None)
        if mapping is None or value is None:
            out[name] = value
            continue
        types = field_types(mapping)
        try:
            out[name] = coerce(types[0] if side == "fno" else types[-1], value)
        except MapValueError as error:
            raise MapValueError(f"map {table_map.name!r}, key field {name!r}: {error}") from None
    return out


def encode_key(parts: tuple[str, ...] | list[str]) -> str:
    """Key parts joined into one RowKey-safe string; `decode_key` gives the parts back."""
    if not parts:
        raise ValueError("a key has at least one part")
    return _SEPARATOR.join(_escape(part) for part in parts)


def decode_key(text: str) -> tuple[str, ...]:
    return tuple(_unescape(part) for part in text.split(_SEPARATOR))


def _must_escape(char: str) -> bool:
    code = ord(char)
    # Table Storage forbids / \ # ? and the C0/C1 control characters in keys; the separator
    # and the escape character itself are escaped so the encoding stays reversible.
    return char in "/\\#?|%" or code < 0x20 or 0x7F <= code <= 0x9F


def _escape(part: str) -> str:
    return "".join(f"{_ESCAPE}{ord(c):02X}" if _must_escape(c) else c for c in part)


_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def _unescape(part: str) -> str:
    return _ESCAPED.sub(lambda match: chr(int(match.group(1), 16)), part)
