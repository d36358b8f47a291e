"""Resource paths of the Web API: `accounts`, `accounts(<guid>)`, `accounts(accountnumber='US-001',
_msdyn_company_value=<guid>)`, `accounts(<guid>)/<relationship>`, `accounts/$count`, bound actions
`accounts/Microsoft.Dynamics.CRM.UpsertMultiple`; and how a key in such a path finds its row."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from devstack.dataverse.errors import DataverseError, bad_request
from devstack.dataverse.schema import AlternateKey, Column, Ref, Table, format_datetime, parse_datetime
from devstack.dataverse.store import Database

SEGMENT = re.compile(r"^(?P<name>[^()/]+)(?:\((?P<key>.*)\))?$")
KEY_PART = re.compile(
    r"""\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*)?
    (?P<value>'(?:[^']|'')*'|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}
       |\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})|\d{4}-\d{2}-\d{2}
       |-?\d+(?:\.\d+)?|true|false|null)\s*(?:,|$)""",
    re.VERBOSE,
)


@dataclass
class Path:
    entity_set: str
    key: dict[str | None, Any] | None  # None name = the bare primary-key form
    rest: list[str]


def split_path(path: str) -> Path:
    """`accounts(…)/x/y` -> Path. Parentheses inside quoted key values are respected."""
    depth, quoted, cut = 0, False, len(path)
    for i, ch in enumerate(path):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "/":
            cut = i
            break
    first, rest = path[:cut], [p for p in path[cut + 1 :].split("/") if p]
    match = SEGMENT.match(first)
    if not match:
        raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{first}'.")
    key = parse_key(match.group("key")) if match.group("key") is not None else None
    return Path(match.group("name"), key, rest)


def parse_key(text: str) -> dict[str | None, Any]:
    out: dict[str | None, Any] = {}
    pos = 0
    text = text.strip()
    if not text:
        raise bad_request("A key value is expected between the parentheses.")
    while pos < len(text):
        match = KEY_PART.match(text, pos)
        if not match or match.end() == pos:
            raise bad_request(f"Bad Request - Error in query syntax: the key '({text})' is not valid.")
        raw = match.group("value")
        value: Any
        if raw.startswith("'"):
            value = raw[1:-1].replace("''", "'")
        elif raw in ("true", "false"):
            value = raw == "true"
        elif raw == "null":
            value = None
        elif len(raw) == 36:
            value = str(uuid.UUID(raw))
        elif "-" in raw[1:]:
            # A bare Edm.Date (`2026-01-01`) or Edm.DateTimeOffset (`2026-01-01T00:00:00Z`): typed by its column.
            value = DateLiteral(raw)
        else:
            value = Decimal(raw) if "." in raw else int(raw)
        out[match.group("name")] = value
        pos = match.end()
    if None in out and len(out) > 1:
        raise bad_request(f"Bad Request - Error in query syntax: the key '({text})' is not valid.")
    return out


def key_text(table: Table, key: AlternateKey, values: dict[str, Any]) -> str | None:
    """The index value of an alternate key for a row; None when a part is empty (not indexed).
    Strings compare case-insensitively, like Dataverse's SQL collation."""
    parts = []
    for name in key.columns:
        value = values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, Ref):
            value = value.id
        parts.append(value.casefold() if isinstance(value, str) else str(value))
    return "\x1f".join(parts)


def key_texts(table: Table, values: dict[str, Any]) -> dict[str, str | None]:
    return {k.name: key_text(table, k, values) for k in table.keys}


@dataclass
class KeyMatch:
    """A resolved URL key: the row id if it exists, and the column values the key names (for upsert)."""

    row_id: str | None
    values: dict[str, Any]
    by_primary: bool


# Alternate-key values with these characters cannot be addressed in a URL (reference §2.4).
URL_UNSAFE_KEY_CHARS = set("/<>*%&:\\?+")


class DateLiteral(str):
    """A bare date or datetime literal of a URL key, kept apart from a quoted string until its column is known."""


def _date_key_value(column: Column, value: Any) -> str:
    """A key value of a date/time column: a date-only column is Edm.Date and takes `2026-01-01`, any other
    Edm.DateTimeOffset and takes `2026-01-01T00:00:00Z`, both bare (OData ABNF); a quoted string is neither."""
    edm = "Edm.Date" if column.date_only else "Edm.DateTimeOffset"
    shape_ok = isinstance(value, DateLiteral) and (len(value) == 10) == column.date_only
    try:
        if shape_ok:
            return format_datetime(parse_datetime(value), date_only=column.date_only)
    except ValueError:
        pass
    shown = f"'{value}'" if isinstance(value, str) and not isinstance(value, DateLiteral) else str(value)
    example = "2026-01-01" if column.date_only else "2026-01-01T00:00:00Z"
    raise bad_request(f"The key value {shown} for '{column.name}' is not a valid {edm} literal; "
                      f"write it bare, e.g. {example}.")


def _coerce_key_value(table: Table, column: Column, value: Any, *, in_url: bool) -> Any:
    if in_url and column.type == "datetime":
        return _date_key_value(column, value)
    if isinstance(value, DateLiteral):
        raise bad_request(f"The key value {value} for '{column.name}' is a date, but '{column.name}' is "
                          f"{column.type}.")
    if in_url and isinstance(value, str) and URL_UNSAFE_KEY_CHARS & set(value):
        raise bad_request(
            f"The key value '{value}' for '{column.name}' contains characters that cannot be used in a URL "
            "(/ < > * % & : \\ ? +); query the row with $filter and address it by id instead."
        )
    if column.is_lookup:
        try:
            return Ref(column.targets[0], str(uuid.UUID(str(value))))
        except ValueError:
            raise bad_request(f"The key value for '{column.value_property}' must be a guid.") from None
    if column.type == "uniqueidentifier" and isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise bad_request(f"'{value}' is not a valid guid for '{column.name}'.") from None
    return column.coerce(value)


def resolve_key(db: Database, table: Table, key: dict[str | None, Any], *, in_url: bool = True) -> KeyMatch:
    if None in key or list(key) == [table.primary_id]:
        raw = key.get(None, key.get(table.primary_id))
        try:
            row_id = str(uuid.UUID(str(raw)))
        except ValueError:
            raise bad_request(f"'{raw}' is not a valid value for the key of '{table.logical_name}'.") from None
        found = db.get(table.logical_name, row_id)
        return KeyMatch(row_id if found else None, {table.primary_id: row_id}, True)
    values: dict[str, Any] = {}
    for name, value in key.items():
        assert name is not None
        # In a URL a lookup part is named `_x_value` (reference §2.3); keys found in a body use column names.
        column = table.by_value_property.get(name) if in_url else table.columns.get(name)
        if column is None:
            hint = ""
            if in_url and name in table.columns and table.columns[name].is_lookup:
                hint = f" A lookup in a key is addressed as '{table.columns[name].value_property}'."
            raise bad_request(
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'."
                + hint
            )
        values[column.name] = _coerce_key_value(table, column, value, in_url=in_url)
    for alt in table.keys:
        if set(alt.columns) == set(values):
            text = key_text(table, alt, values)
            row_id = db.find_by_key(table.logical_name, alt.name, text) if text is not None else None
            return KeyMatch(row_id, values, False)
    raise bad_request(
        f"The key specified for '{table.logical_name}' ({', '.join(values)}) is not one of its alternate keys."
    )
