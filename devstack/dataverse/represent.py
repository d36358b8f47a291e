"""A row as the Web API returns it: `@odata.etag`, plain columns, lookups as `_x_value`, and the
annotations asked for with `Prefer: odata.include-annotations` (formatted values, lookup names)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from devstack.dataverse.schema import Column, Ref, Table

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAV_NAME = "Microsoft.Dynamics.CRM.associatednavigationproperty"


def etag(version: int) -> str:
    return f'W/"{version}"'


def wants_annotation(prefer: str | None, name: str) -> bool:
    """Does `Prefer: odata.include-annotations="…"` ask for this annotation (`*` and prefixes)?"""
    if not prefer or "odata.include-annotations" not in prefer:
        return False
    raw = prefer.split("odata.include-annotations", 1)[1].lstrip(" =").split(";")[0]
    raw = raw.split('",')[0].strip().strip('"')
    for pattern in (p.strip() for p in raw.split(",")):
        if pattern == "*" or pattern == name or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return True
    return False


def formatted(column: Column, value: Any, name_of: Callable[[Ref], str | None]) -> str | None:
    if value is None:
        return None
    if isinstance(value, Ref):
        return name_of(value)
    if column.options:
        return column.options.get(value, str(value))
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if column.type == "money" and isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, Decimal | int):
        return f"{value:,}"
    if column.type == "datetime":
        return str(value).replace("T", " ").replace("Z", "")
    return None


def represent(
    table: Table, version: int, row: dict[str, Any], select: list[Column] | None, prefer: str | None,
    name_of: Callable[[Ref], str | None],
) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.etag": etag(version)}
    columns = select if select is not None else [c for c in table.columns.values() if c.valid_for_read]
    if table.columns[table.primary_id] not in columns:
        columns = [*columns, table.columns[table.primary_id]]
    want_formatted = wants_annotation(prefer, FORMATTED)
    want_lookup = wants_annotation(prefer, LOOKUP_NAME)
    want_nav = wants_annotation(prefer, NAV_NAME)
    for column in columns:
        value = row.get(column.name)
        prop = column.value_property
        if want_formatted and value is not None:
            text = formatted(column, value, name_of)
            if text is not None:
                out[f"{prop}@{FORMATTED}"] = text
        if isinstance(value, Ref):
            if want_nav:
                out[f"{prop}@{NAV_NAME}"] = column.nav_for(value.table)
            if want_lookup:
                out[f"{prop}@{LOOKUP_NAME}"] = value.table
            out[prop] = value.id
        else:
            out[prop] = value
    return out
