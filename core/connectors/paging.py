"""Server-driven paging shared by both clients: one page of a collection query, and the loop over pages.

A page carries the server's `@odata.nextLink` as it came. A resumable reader (initial sync) stores that
link as its checkpoint and later asks the client for the page behind it; the link already holds the
query (filter, select, order, the server's paging cookie or skip), so nothing else has to be kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.connectors import jsonwire
from core.connectors.http import ODataHttp


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_link: str | None  # None on the last page


def query_options(*, select: Sequence[str] | None, filter: str | None, orderby: str | None,
                  top: int | None = None) -> dict[str, str]:
    """The system query options of a first page."""
    options: dict[str, str] = {}
    if select:
        options["$select"] = ",".join(select)
    if filter:
        options["$filter"] = filter
    if orderby:
        options["$orderby"] = orderby
    if top is not None:
        options["$top"] = str(top)
    return options


async def read_page(http: ODataHttp, entity_set: str, options: Mapping[str, str], next_link: str | None,
                    headers: Mapping[str, str] | None, link_options: Mapping[str, str] | None = None) -> Page:
    """GET the first page (`entity_set` with `options`) or the page behind `next_link`, the link as the
    server gave it (plus `link_options`, for a server that might drop one from its links)."""
    if next_link is None:
        response = await http.request("GET", entity_set, params=options, headers=headers)
    else:
        response = await http.request("GET", next_link, params=link_options, headers=headers)
    body = jsonwire.loads(response.content)
    return Page(list(body.get("value", [])), body.get("@odata.nextLink"))


async def all_rows(read: Callable[[str | None], Awaitable[Page]]) -> list[dict[str, Any]]:
    """Every row, reading `read(None)` first and then `read(next_link)` until a page has no next link."""
    rows: list[dict[str, Any]] = []
    link: str | None = None
    while True:
        page = await read(link)
        rows += page.rows
        if page.next_link is None:
            return rows
        link = page.next_link
