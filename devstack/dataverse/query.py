"""Collection queries: `$select`, `$filter`, `$orderby`, `$top`, `$count`, server paging with
`Prefer: odata.maxpagesize` and an opaque `$skiptoken` paging cookie, and change tracking
(`Prefer: odata.track-changes`, `$deltatoken`)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from devstack.dataverse.errors import bad_request
from devstack.dataverse.odata_filter import Compare, Literal, Logical, Prop, comparable, evaluate, parse_filter
from devstack.dataverse.schema import Column, Table

MAX_PAGE_SIZE = 5000
COUNT_LIMIT = 5000
UNSUPPORTED = ("$skip", "$search", "$apply", "$compute", "$levels")


@dataclass
class Query:
    select: list[Column] | None = None
    filter: Any = None
    orderby: list[tuple[Column, bool]] = field(default_factory=list)  # (column, descending)
    top: int | None = None
    count: bool = False
    skiptoken: dict[str, Any] | None = None
    deltatoken: int | None = None


def parse_select(text: str | None, table: Table) -> list[Column] | None:
    if not text:
        return None
    columns = []
    for name in (part.strip() for part in text.split(",")):
        column = table.by_value_property.get(name)
        if column is None:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'."
            )
        columns.append(column)
    return columns


def parse_query(params: dict[str, str], table: Table) -> Query:
    for name in UNSUPPORTED:
        if name in params:
            raise bad_request(f"The query parameter {name} is not supported")
    query = Query(select=parse_select(params.get("$select"), table))
    if params.get("$filter"):
        query.filter = parse_filter(params["$filter"], table)
    if params.get("$orderby"):
        for part in params["$orderby"].split(","):
            words = part.split()
            if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
                raise bad_request(f"Syntax error in '$orderby={params['$orderby']}'.")
            column = table.by_value_property.get(words[0])
            if column is None:
                raise bad_request(
                    f"Could not find a property named '{words[0]}' on type "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}'."
                )
            query.orderby.append((column, len(words) == 2 and words[1].lower() == "desc"))
    if "$top" in params:
        try:
            query.top = int(params["$top"])
            if query.top < 0:
                raise ValueError
        except ValueError:
            raise bad_request(f"Invalid value '{params['$top']}' for $top query option found.") from None
    if "$count" in params:
        if params["$count"] not in ("true", "false"):
            raise bad_request(f"'{params['$count']}' is not a valid count option.")
        query.count = params["$count"] == "true"
    if "$skiptoken" in params:
        query.skiptoken = decode_skiptoken(params["$skiptoken"])
    if "$deltatoken" in params:
        query.deltatoken = decode_deltatoken(params["$deltatoken"])
        if query.filter is not None or query.orderby or query.top is not None:
            raise bad_request("$filter, $orderby, $expand and $top are not supported with change tracking.")
    return query


def parse_expand(text: str | None) -> dict[str, str | None]:
    """`msdyn_company($select=cdm_companycode),Keys` -> {"msdyn_company": "cdm_companycode", "Keys": None}."""
    out: dict[str, str | None] = {}
    for match in re.finditer(r"(\w+)(?:\(([^)]*)\))?", text or ""):
        inner = match.group(2) or ""
        sel = re.search(r"\$select=([^;]*)", inner)
        out[match.group(1)] = sel.group(1) if sel else None
    return out


def column_getter(table: Table, row: dict[str, Any]) -> Callable[[Column], Any]:
    def get(column: Column) -> Any:
        value = row.get(column.name)
        return value.id if column.is_lookup and value is not None else value

    return get


def select_rows(
    table: Table, rows: list[tuple[str, int, dict[str, Any]]], query: Query
) -> list[tuple[str, int, dict[str, Any]]]:
    """Filter and order (ties broken by primary id, so pages are stable)."""
    if query.filter is not None:
        rows = [r for r in rows if evaluate(query.filter, column_getter(table, r[2]))]
    rows = sorted(rows, key=lambda r: r[0])
    for column, descending in reversed(query.orderby):
        # SQL Server puts nulls first in ascending order.
        def key(r: tuple[str, int, dict[str, Any]], column: Column = column) -> tuple[bool, Any]:
            value = comparable(column_getter(table, r[2])(column))
            return (value is not None, value if value is not None else 0)

        rows = sorted(rows, key=key, reverse=descending)
    return rows


# Columns whose values compare as strings (casefolded, lookups by id), as their alternate-key index text does.
KEY_TEXT_TYPES = ("string", "memo", "lookup", "uniqueidentifier")
# Past this many disjuncts (an `and` of `or`s multiplies them) a query is left to the full scan.
MAX_KEY_DISJUNCTS = 1000
PRIMARY = ""  # the key name `key_lookups` gives the primary id


def key_lookups(table: Table, node: Any) -> list[tuple[str, str]] | None:
    """What to look up in the key index to find every row `node` (a parsed `$filter`) can match, as
    (alternate key name, index text) pairs, (PRIMARY, row id) for the primary id; None when the filter is
    not of that shape: an `or` of conjunctions each of which compares every column of one key (the primary
    id or an alternate key) `eq` a non-empty string literal (a guid for a lookup's `_x_value`). The rows
    found are candidates only: the caller still evaluates the whole filter on them, so other conditions of a
    conjunction, and odd casing, behave as in a scan. How real Dataverse answers such reads: from the key's
    SQL index, not by reading the table."""
    disjuncts = _equalities(node)
    if disjuncts is None:
        return None
    lookups: list[tuple[str, str]] = []
    for wanted in disjuncts:
        if table.primary_id in wanted:
            lookups.append((PRIMARY, wanted[table.primary_id]))
            continue
        key = next((k for k in table.keys if all(c in wanted for c in k.columns)), None)
        if key is None:
            return None
        # The index text of resources.key_text: the parts casefolded, joined by \x1f.
        lookups.append((key.name, "\x1f".join(wanted[c] for c in key.columns)))
    return lookups


def _equalities(node: Any) -> list[dict[str, str]] | None:
    """`node` as an `or` of conjunctions, each as the casefolded string each column must equal (`and` of `or`s
    distributed); conditions of other kinds constrain nothing here. None past MAX_KEY_DISJUNCTS."""
    if isinstance(node, Logical):
        left, right = _equalities(node.left), _equalities(node.right)
        if left is None or right is None:
            return None
        # A column compared with two values in one conjunction matches no row: either value finds a superset.
        out = left + right if node.op == "or" else [{**b, **a} for a in left for b in right]
        return out if len(out) <= MAX_KEY_DISJUNCTS else None
    if isinstance(node, Compare) and node.op == "eq":
        prop = next((side for side in (node.left, node.right) if isinstance(side, Prop)), None)
        literal = next((side for side in (node.left, node.right) if isinstance(side, Literal)), None)
        # An empty string is not indexed (resources.key_text), so `eq ''` needs the scan.
        if (prop is not None and literal is not None and prop.column.type in KEY_TEXT_TYPES
                and isinstance(literal.value, str) and literal.value):
            return [{prop.column.name: literal.value.casefold()}]
    return [{}]


def page(
    rows: list[tuple[str, int, dict[str, Any]]], query: Query, max_page_size: int | None
) -> tuple[list[tuple[str, int, dict[str, Any]]], dict[str, Any] | None]:
    """The page to return and the state of the next page's skiptoken (None on the last page)."""
    if max_page_size is None and query.top is not None:
        return rows[: query.top], None
    size = min(max_page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if query.skiptoken:
        start = int(query.skiptoken.get("o", 0))
        last_id = query.skiptoken.get("id")
        # The cookie remembers the last row returned; if rows moved since, resume right after it.
        if last_id and not (0 < start <= len(rows) and rows[start - 1][0] == last_id):
            ids = [r[0] for r in rows]
            start = ids.index(last_id) + 1 if last_id in ids else start
    chunk = rows[start : start + size]
    if start + size >= len(rows):
        return chunk, None
    return chunk, {"o": start + size, "id": chunk[-1][0] if chunk else None, "p": (start // size) + 2}


def encode_skiptoken(state: dict[str, Any]) -> str:
    """Dataverse's paging cookie is an XML fragment; keep that look, with our state inside."""
    inner = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    cookie = f'<cookie pagenumber="{state.get("p", 2)}" pagingcookie="{inner}" istracking="False" />'
    return quote(cookie, safe="")


def decode_skiptoken(text: str) -> dict[str, Any]:
    match = re.search(r'pagingcookie="([^"]*)"', unquote(text))
    try:
        assert match is not None
        return json.loads(base64.urlsafe_b64decode(match.group(1).encode()))
    except Exception:
        raise bad_request("The $skiptoken value is not a valid paging cookie.") from None


def encode_deltatoken(version: int) -> str:
    # Same shape as Dataverse's tokens: "<version>!<MM/dd/yyyy HH:mm:ss>".
    return f"{version}!{datetime.now(UTC).strftime('%m/%d/%Y %H:%M:%S')}"


def decode_deltatoken(text: str) -> int:
    try:
        return int(unquote(text).split("!", 1)[0])
    except ValueError:
        raise bad_request(f"The delta token '{text}' is not valid.") from None
