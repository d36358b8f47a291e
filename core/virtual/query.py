"""The OData v4 system query options of a collection read, parsed and checked against the table's definition.

Each bad option is a BadInput naming it (`$top`, `$orderby`, ...), so the caller (through Dataverse: the plug-in
trace log) reads which option is wrong and why."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import BadInput
from core.virtual.filter import Node, parse_filter
from core.virtual.model import VirtualTable

# Options a grid or a generic client may send that change nothing here: answered as if absent.
_IGNORED = {"$format", "$expand", "$search", "$apply", "$compute", "$levels", "$schemaversion", "$deltatoken"}
_KNOWN = {"$select", "$filter", "$orderby", "$top", "$skip", "$skiptoken", "$count", "$inlinecount"}


@dataclass(frozen=True)
class Query:
    select: tuple[str, ...] | None = None  # OData names; None = every property
    filter: Node | None = None
    orderby: tuple[tuple[str, bool], ...] = ()  # (property, descending)
    top: int | None = None
    skip: int = 0
    count: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)  # options passed through to next links (the key, ...)
    after: tuple[str, ...] | None = None  # server paging by key: the key (as text) of the last row served


def _integer(name: str, text: str) -> int:
    if not text.strip().isdigit():
        raise BadInput(name, f"{name} must be a whole number of 0 or more, not {text!r}")
    return int(text)


def skiptoken_of(offset: int, top: int | None, after: Sequence[str] | None = None) -> str:
    """Server-driven paging token: where the next page starts and how much of the caller's $top is left. Opaque to
    the caller. Rows are ordered by the table's key after any $orderby, so an offset names the same row again; when
    the order is the key alone, the token holds the last row's key instead (`after`), and the next page is the rows
    after it: a condition the source runs on its key, as fast on the last page as on the first."""
    state: dict[str, Any] = {"o": offset}
    if top is not None:
        state["t"] = top
    if after is not None:
        state["k"] = list(after)
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def _read_skiptoken(text: str, key_count: int) -> tuple[int, int | None, tuple[str, ...] | None]:
    try:
        state = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        offset, top, after = state["o"], state.get("t"), state.get("k")
        if not isinstance(offset, int) or offset < 0 or not (top is None or (isinstance(top, int) and top >= 0)):
            raise ValueError
        if after is not None and (
            not isinstance(after, list) or len(after) != key_count or not all(isinstance(v, str) for v in after)
        ):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise BadInput(
            "$skiptoken", "$skiptoken is not one this service made; follow @odata.nextLink as given"
        ) from None
    return offset, top, None if after is None else tuple(after)


def parse_query(options: Mapping[str, str], table: VirtualTable) -> Query:
    """The collection read `options` (query string, already URL-decoded) ask of `table`."""
    for name in options:
        lowered = name.lower()
        if lowered.startswith("$") and lowered not in _KNOWN | _IGNORED:
            raise BadInput(
                name, f"{name} is not a query option this service supports (it supports {', '.join(sorted(_KNOWN))})"
            )
    get = {k.lower(): v for k, v in options.items() if k.startswith("$")}
    known = {c.name for c in table.columns} | {table.id_name}

    select: tuple[str, ...] | None = None
    if get.get("$select", "").strip() not in ("", "*"):
        names = tuple(n.strip() for n in get["$select"].split(","))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise BadInput(
                "$select",
                f"$select names {', '.join(map(repr, unknown))}, which {table.entity_set} does "
                f"not have (properties: {', '.join(sorted(known))})",
            )
        select = names

    node = parse_filter(get["$filter"], table) if get.get("$filter", "").strip() else None

    orderby: list[tuple[str, bool]] = []
    for part in (p.strip() for p in get.get("$orderby", "").split(",")):
        if not part:
            continue
        name, _, direction = part.partition(" ")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            raise BadInput("$orderby", f"$orderby: {direction!r} after {name} must be asc or desc")
        column = table.column(name)
        if column is None or not column.filterable:
            why = "is not filterable" if column is not None else "is no property of it"
            raise BadInput("$orderby", f"$orderby: {table.entity_set} cannot be ordered by {name!r} ({name} {why})")
        orderby.append((name, direction == "desc"))

    top = _integer("$top", get["$top"]) if "$top" in get else None
    skip = _integer("$skip", get["$skip"]) if "$skip" in get else 0
    after: tuple[str, ...] | None = None
    if "$skiptoken" in get:
        key_count = 1 if table.key.kind == "column" else len(table.key.columns)
        offset, token_top, after = _read_skiptoken(get["$skiptoken"], key_count)
        if after is not None and orderby:
            raise BadInput("$skiptoken", "$skiptoken is not one this service made; follow @odata.nextLink as given")
        skip += offset
        top = token_top if top is None or token_top is None else min(top, token_top)

    count = False
    if "$count" in get:
        if get["$count"].lower() not in ("true", "false"):
            raise BadInput("$count", f"$count must be true or false, not {get['$count']!r}")
        count = get["$count"].lower() == "true"
    if "$inlinecount" in get:  # OData v2/v3's name, which the Data Provider's docs also use
        if get["$inlinecount"].lower() not in ("allpages", "none"):
            raise BadInput("$inlinecount", f"$inlinecount must be allpages or none, not {get['$inlinecount']!r}")
        count = count or get["$inlinecount"].lower() == "allpages"

    extra = {k: v for k, v in options.items() if not k.startswith("$")}
    return Query(select, node, tuple(orderby), top, skip, count, extra, after)
