"""Finance & Operations OData client (reference §3.4): CRUD by composite key, paging, `$batch`.

Key access always sends `cross-company=true`: without it F&O answers 404 for a record of any company
but the caller's default one. Enums are written and read as their symbol strings ("Yes",
"Organization"); reals are Decimals both ways (jsonwire), so money keeps every digit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from core.connectors import jsonwire
from core.connectors.auth import TokenSource
from core.connectors.batch import BatchOp, BatchResult, build_batch, parse_batch
from core.connectors.errors import NotFound, ValidationFailed
from core.connectors.http import ODataHttp, Stats, odata_literal
from core.connectors.paging import Page, all_rows, query_options, read_page

log = logging.getLogger(__name__)

CROSS_COMPANY = {"cross-company": "true"}
BASE_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


def key_segment(key: Mapping[str, Any]) -> str:
    """`dataAreaId='usmf',CustomerAccount='US-001'`: every key field, each as its OData literal (`odata_literal`;
    a date is an Edm.DateTimeOffset, `StartDate=2026-01-01T12:00:00Z`), strings percent-encoded where they would
    end the path."""
    if not key:
        raise ValueError("key: F&O needs every key field of the entity")
    return ",".join(f"{name}={key_literal(name, value, in_url=True)}" for name, value in key.items())


def key_literal(name: str, value: Any, *, in_url: bool = False) -> str:
    """A key value as F&O takes it in a key segment (`in_url`) or a `$filter`."""
    literal = odata_literal(name, value, dates="datetimeoffset")
    if in_url and isinstance(value, str):
        # Percent-encode what would end the path or start a query (`/ ? # %`), keep OData syntax.
        literal = quote(literal, safe="'()=,:;@!$*+ ")
    return literal


class FnoClient:
    def __init__(self, url: str, tokens: TokenSource, *, transport: httpx.AsyncBaseTransport | None = None,
                 max_retries: int = 4, max_total_wait: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.http = ODataHttp(f"{self.url}/data/", tokens, headers=BASE_HEADERS, transport=transport,
                              max_retries=max_retries, max_total_wait=max_total_wait)

    key_segment = staticmethod(key_segment)

    @property
    def stats(self) -> Stats:
        return self.http.stats

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> FnoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @staticmethod
    def address(entity_set: str, key: Mapping[str, Any]) -> str:
        """The record's URL relative to `/data/`, cross-company (usable in `$batch` operations too)."""
        return f"{entity_set}({key_segment(key)})?cross-company=true"

    async def get(self, entity_set: str, key: Mapping[str, Any], *,
                  select: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The record, or None when it does not exist."""
        try:
            response = await self.http.request("GET", self.address(entity_set, key), params=_select(select))
        except NotFound:
            return None
        return jsonwire.loads(response.content)

    async def query(self, entity_set: str, *, filter: str | None = None, select: Sequence[str] | None = None,
                    top: int | None = None, orderby: str | None = None, cross_company: bool = True,
                    page_size: int | None = None) -> list[dict[str, Any]]:
        """Every matching record, following `@odata.nextLink` (server paging, at most 10,000 a page)."""
        return await all_rows(lambda link: self.page(entity_set, filter=filter, select=select, orderby=orderby,
                                                     page_size=page_size, cross_company=cross_company,
                                                     next_link=link, top=top))

    async def page(self, entity_set: str, *, filter: str | None = None, select: Sequence[str] | None = None,
                   orderby: str | None = None, page_size: int | None = 1000, cross_company: bool = True,
                   next_link: str | None = None, top: int | None = None) -> Page:
        """One page: the first (next_link None) or the one behind a stored `next_link`.

        `page_size` None leaves the page size to the server (10,000 at most). The next link carries the
        query, so `filter`, `select`, `orderby` and `top` count for the first page only; `cross-company`
        is sent on every page, so a link that lost it cannot quietly narrow the read to one company.
        """
        company = CROSS_COMPANY if cross_company else {}
        headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else None
        options = {**query_options(select=select, filter=filter, orderby=orderby, top=top), **company}
        return await read_page(self.http, entity_set, options, next_link, headers, link_options=company or None)

    async def create(self, entity_set: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST; the created record as F&O answers it (defaults filled in)."""
        response = await self.http.request("POST", entity_set, body=dict(body))
        return jsonwire.loads(response.content) if response.content else {}

    async def update(self, entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], *,
                     if_match: str | None = None) -> None:
        """PATCH by key; `if_match` (an `@odata.etag`) makes a changed record a ConflictError."""
        headers = {"If-Match": if_match} if if_match else None
        await self.http.request("PATCH", self.address(entity_set, key), body=_without(body, key), headers=headers)

    async def upsert(self, entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
        """Update or create; True when created.

        F&O has no upsert: PATCH by key, and on 404 POST with the key fields in the body. Race: another
        writer may create the record between our 404 and our POST; F&O then refuses the POST as a
        duplicate (400), so we PATCH once more, which now finds the record.
        """
        try:
            await self.update(entity_set, key, body)
            return False
        except NotFound:
            pass
        try:
            await self.create(entity_set, {**dict(body), **dict(key)})
            return True
        except ValidationFailed as refused:
            try:
                await self.update(entity_set, key, body)
            except NotFound:
                raise refused from None
            log.info("%s: created concurrently by another writer; updated instead", entity_set)
            return False

    async def delete(self, entity_set: str, key: Mapping[str, Any]) -> bool:
        """True when a record was deleted, False when it was already gone."""
        try:
            await self.http.request("DELETE", self.address(entity_set, key))
        except NotFound:
            return False
        return True

    async def batch(self, ops: Sequence[BatchOp], *, atomic: bool = False) -> list[BatchResult]:
        """One `$batch`; `atomic=True` puts every op in one changeset (all or nothing: a failure answers
        with that one part only)."""
        absolute = [BatchOp(op.method, self.http.url(op.url), op.body, op.headers, op.content_id) for op in ops]
        content_type, content = build_batch(absolute, atomic=atomic)
        response = await self.http.request("POST", "$batch", content=content,
                                           headers={"Content-Type": content_type}, multipart_ok=True)
        return parse_batch(response.headers.get("Content-Type", ""), response.content)


def _select(select: Sequence[str] | None) -> dict[str, str] | None:
    return {"$select": ",".join(select)} if select else None


def _without(body: Mapping[str, Any], key: Mapping[str, Any]) -> dict[str, Any]:
    # Key fields cannot change in F&O; sending them again on PATCH is at best a no-op.
    return {name: value for name, value in body.items() if name not in key}
