"""Dataverse Web API client (reference §2): CRUD, alternate-key upsert, paging, `$batch`.

Every method takes `headers=` so callers can add e.g. `MSCRM.BypassBusinessLogicExecutionStepIds`
or `CallerObjectId`; writes take `tag=` (the `?tag=` shared variable plug-ins see).

`write_headers` (optional) is consulted on every write (create, update, upsert, delete and each
write part of a `$batch`) for headers to add, e.g. core.ops.steps.OwnSteps: the bypass of our own
webhook steps, so the engine's writes do not come back as webhooks. A caller's own header of the
same name wins; a failing `write_headers` never fails the write.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from core.connectors import jsonwire
from core.connectors.auth import TokenSource
from core.connectors.batch import BatchOp, BatchResult, build_batch, parse_batch
from core.connectors.errors import AuthFailed, ConnectorError, NotFound, ValidationFailed
from core.connectors.http import ODataHttp, Stats, odata_literal, odata_string
from core.connectors.paging import Page, all_rows, query_options, read_page

log = logging.getLogger("core.connectors.dataverse")
# Characters Dataverse refuses in alternate-key values inside a URL (reference §2.4).
_URL_UNSAFE = re.compile(r"[/<>*%&:\\?+]")
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")

BASE_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "If-None-Match": "null",
}
# Error bodies with the CDS error annotations (trace text, help link) say more; only those are asked
# for, so rows do not fill up with formatted values nobody reads.
ANNOTATIONS = 'odata.include-annotations="Microsoft.PowerApps.CDS.*"'
_MULTIPLE: dict[str, WriteOperation] = {
    "CreateMultiple": "create", "UpdateMultiple": "update", "UpsertMultiple": "upsert"}

WriteOperation = Literal["create", "update", "upsert", "delete"]


class WriteHeaders(Protocol):
    """Headers a DataverseClient adds to its writes (see the module docstring)."""

    async def for_write(self, entity_set: str, operation: WriteOperation) -> Mapping[str, str]: ...

    def refused(self, error: ConnectorError) -> bool:
        """True when `error` is Dataverse refusing the added headers: the write is sent again without."""
        ...


@dataclass(frozen=True)
class UpsertResult:
    id: str
    created: bool
    row: dict[str, Any]


def key_segment(key: Mapping[str, Any]) -> str:
    """`accountnumber='US-001',_msdyn_company_value=<guid>` for an alternate key (or a single id)."""
    if not key:
        raise ValueError("key: at least one key part is needed")
    parts = []
    for name, value in key.items():
        parts.append(f"{name}={_key_literal(name, value)}")
    return ",".join(parts)


def _key_literal(name: str, value: Any) -> str:
    if isinstance(value, str):
        if name.startswith("_") and name.endswith("_value"):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                raise ValueError(f"key part {name!r}: a lookup key part needs a guid, got {value!r}") from None
        if _URL_UNSAFE.search(value):
            raise ValueError(f"key part {name!r}: value {value!r} has a character Dataverse refuses in URLs "
                             "(/ < > * % & : \\ ? +); query with $filter instead")
    # A date is an Edm.Date (a date-only column): `msdyn_validfrom=2026-01-01`.
    return odata_literal(name, value, dates="date")


def key_filter(key: Mapping[str, Any]) -> str:
    """The same key as a `$filter` (for values `key_segment` refuses in URLs)."""
    parts = []
    for name, value in key.items():
        if isinstance(value, str) and not (name.startswith("_") and name.endswith("_value")):
            parts.append(f"{name} eq {odata_string(value)}")
        else:
            parts.append(f"{name} eq {_key_literal(name, value)}")
    return " and ".join(parts)


def _address(entity_set: str, row_id: str | uuid.UUID | None, key: Mapping[str, Any] | None) -> str:
    if (row_id is None) == (key is None):
        raise ValueError(f"{entity_set}: give exactly one of row_id or key")
    if row_id is not None:
        return f"{entity_set}({uuid.UUID(str(row_id))})"
    assert key is not None
    return f"{entity_set}({key_segment(key)})"


def bind(entity_set: str, row_id: str | uuid.UUID | None = None, key: Mapping[str, Any] | None = None) -> str:
    """The `@odata.bind` value for a lookup: `/accounts(<guid>)` or `/accounts(<alternate key>)`."""
    return "/" + _address(entity_set, row_id, key)


class DataverseClient:
    def __init__(self, url: str, tokens: TokenSource, *, transport: httpx.AsyncBaseTransport | None = None,
                 max_retries: int = 4, api: str = "v9.2", max_total_wait: float = 60.0,
                 write_headers: WriteHeaders | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = ODataHttp(f"{self.url}/api/data/{api}/", tokens, headers=BASE_HEADERS, transport=transport,
                              max_retries=max_retries, max_total_wait=max_total_wait)
        self.write_headers = write_headers

    key_segment = staticmethod(key_segment)
    key_filter = staticmethod(key_filter)
    bind = staticmethod(bind)

    @property
    def stats(self) -> Stats:
        return self.http.stats

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> DataverseClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get(self, entity_set: str, row_id: str | uuid.UUID | None = None, *,
                  key: Mapping[str, Any] | None = None, select: Sequence[str] | None = None,
                  headers: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """The row, or None when it does not exist."""
        try:
            response = await self.http.request("GET", _address(entity_set, row_id, key),
                                               params=_select(select), headers=headers)
        except NotFound:
            return None
        return jsonwire.loads(response.content)

    async def query(self, entity_set: str, *, filter: str | None = None, select: Sequence[str] | None = None,
                    top: int | None = None, page_size: int = 5000, orderby: str | None = None,
                    headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Every matching row, following `@odata.nextLink` unchanged (same maxpagesize on each page)."""
        return await all_rows(lambda link: self.page(entity_set, filter=filter, select=select, orderby=orderby,
                                                     page_size=page_size, next_link=link, headers=headers, top=top))

    async def page(self, entity_set: str, *, filter: str | None = None, select: Sequence[str] | None = None,
                   orderby: str | None = None, page_size: int = 5000, next_link: str | None = None,
                   headers: Mapping[str, str] | None = None, top: int | None = None) -> Page:
        """One page: the first (next_link None) or the one behind a stored `next_link`, sent as given.

        The next link already carries the query and Dataverse's paging cookie, so `filter`, `select`,
        `orderby` and `top` count for the first page only; the maxpagesize must stay the same on every
        page (reference §2.6), so it is sent each time.
        """
        send = {**(headers or {})}
        if top is None:
            # Dataverse ignores $top when a maxpagesize is sent, so send one or the other.
            send["Prefer"] = f"odata.maxpagesize={page_size}"
        options = query_options(select=select, filter=filter, orderby=orderby, top=top)
        return await read_page(self.http, entity_set, options, next_link, send)

    async def create(self, entity_set: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None,
                     tag: str | None = None) -> str:
        """The new row's id (from `OData-EntityId`)."""
        response = await self._write(entity_set, "create", "POST", entity_set, body=dict(body), params=_tag(tag),
                                     headers=_with_annotations(headers))
        return _entity_id(response)

    async def create_multiple(self, entity_set: str, table: str, bodies: Sequence[Mapping[str, Any]], *,
                              headers: Mapping[str, str] | None = None) -> list[str]:
        """CreateMultiple: the new rows' ids, in order. All or nothing: one refused row refuses them all."""
        targets = [{"@odata.type": f"Microsoft.Dynamics.CRM.{table}", **body} for body in bodies]
        action = f"{entity_set}/Microsoft.Dynamics.CRM.CreateMultiple"
        response = await self._write(entity_set, "create", "POST", action, body={"Targets": targets},
                                     headers=dict(headers or {}), alone=True)
        return [str(row_id).lower() for row_id in jsonwire.loads(response.content).get("Ids", [])]

    async def update(self, entity_set: str, row_id: str | uuid.UUID, body: Mapping[str, Any], *,
                     if_match: str | None = "*", headers: Mapping[str, str] | None = None,
                     tag: str | None = None) -> None:
        """PATCH an existing row; `if_match="*"` (default) refuses to create, an etag checks the version."""
        send = _with_annotations(headers)
        if if_match:
            send["If-Match"] = if_match
        # Without If-Match a PATCH creates a missing row: its Create steps may fire too.
        await self._write(entity_set, "update" if if_match else "upsert", "PATCH", _address(entity_set, row_id, None),
                          body=dict(body), params=_tag(tag), headers=send)

    async def upsert(self, entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], *,
                     select: Sequence[str] | None = None, headers: Mapping[str, str] | None = None,
                     tag: str | None = None) -> UpsertResult:
        """PATCH by alternate key: creates or updates; key columns are kept out of the body (§2.4)."""
        clean = {name: value for name, value in body.items() if name not in key}
        params = {**(_select(select) or {}), **(_tag(tag) or {})}
        send = _with_annotations(headers)
        send["Prefer"] = f"return=representation,{ANNOTATIONS}"
        response = await self._write(entity_set, "upsert", "PATCH", _address(entity_set, None, key), body=clean,
                                     params=params or None, headers=send)
        row = jsonwire.loads(response.content) if response.content else {}
        row_id = _entity_id(response) if "OData-EntityId" in response.headers else _id_from_row(entity_set, row)
        return UpsertResult(id=row_id, created=response.status_code == 201, row=row)

    async def delete(self, entity_set: str, row_id: str | uuid.UUID | None = None, *,
                     key: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                     tag: str | None = None) -> bool:
        """True when a row was deleted, False when it was already gone."""
        try:
            await self._write(entity_set, "delete", "DELETE", _address(entity_set, row_id, key), params=_tag(tag),
                              headers=headers or {})
        except NotFound:
            return False
        return True

    async def batch(self, ops: Sequence[BatchOp], *, atomic: bool = False, continue_on_error: bool = True,
                    headers: Mapping[str, str] | None = None) -> list[BatchResult]:
        """One `$batch`; results in operation order. Relative op URLs are made absolute for the target.

        Without `continue_on_error` Dataverse stops at the first failing part: the results end with it.
        """
        absolute = [BatchOp(op.method, self.http.url(op.url), op.body,
                            await self._part_headers(op.method, op.url, op.headers), op.content_id) for op in ops]
        content_type, content = build_batch(absolute, atomic=atomic)
        send = {**(headers or {}), "Content-Type": content_type}
        if continue_on_error:
            send["Prefer"] = "odata.continue-on-error"
        response = await self.http.request("POST", "$batch", content=content, headers=send,
                                           multipart_ok=True)
        return parse_batch(response.headers.get("Content-Type", ""), response.content)

    # ---- the write headers ------------------------------------------------------------------------------

    async def _added(self, entity_set: str, operation: WriteOperation,
                     headers: Mapping[str, str] | None) -> dict[str, str]:
        """What `write_headers` adds to a write; never what the caller set itself, never an exception."""
        if self.write_headers is None:
            return {}
        try:
            extra = dict(await self.write_headers.for_write(entity_set, operation))
        except Exception:  # a write must not fail for want of an optional header
            log.warning("write headers for %s of %s failed; writing without them", operation, entity_set,
                        exc_info=True)
            return {}
        own = {name.lower() for name in headers or {}}
        return {name: value for name, value in extra.items() if name.lower() not in own}

    async def _write(self, entity_set: str, operation: WriteOperation, method: str, url: str, *,
                     headers: Mapping[str, str], **kwargs: Any) -> httpx.Response:
        extra = await self._added(entity_set, operation, headers)
        try:
            return await self.http.request(method, url, headers={**headers, **extra}, **kwargs)
        except AuthFailed as error:
            if not extra or self.write_headers is None or not self.write_headers.refused(error):
                raise
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def _part_headers(self, method: str, url: str, headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """A `$batch` part's headers with the write headers added (per part: reference §2.5 leaves open
        whether the batch's own headers reach its parts)."""
        target = write_target(method, url, self.http.base_url)
        if target is None:
            return headers
        entity_set, operation = target
        if operation == "upsert" and any(name.lower() == "if-match" for name in headers or {}):
            operation = "update"
        extra = await self._added(entity_set, operation, headers)
        return {**(headers or {}), **extra} if extra else headers


def write_target(method: str, url: str, base_url: str = "") -> tuple[str, WriteOperation] | None:
    """(entity set, operation) of a write request by its method and URL; None for a read."""
    method = method.upper()
    if method not in ("POST", "PATCH", "PUT", "DELETE"):
        return None
    path = url[len(base_url):] if base_url and url.startswith(base_url) else url
    if path.startswith(("http://", "https://")):
        path = path.split("/api/data/", 1)[-1].split("/", 1)[-1]
    path = path.lstrip("/").split("?", 1)[0]
    match = re.match(r"([A-Za-z_][\w]*)(\([^)]*\))?(?:/(?:Microsoft\.Dynamics\.CRM\.)?(\w+))?", path)
    if match is None or match.group(1) == "$batch":
        return None
    entity_set, keyed, action = match.group(1), match.group(2), match.group(3)
    if keyed is None:
        if action is not None:  # CreateMultiple, UpdateMultiple, UpsertMultiple (other actions: not ours)
            operation = _MULTIPLE.get(action)
            return (entity_set, operation) if operation and method == "POST" else None
        return (entity_set, "create") if method == "POST" else None
    if method == "POST":  # an association or a bound action: no Create/Update/Delete of the row
        return None
    if action is not None:  # one column or a lookup's $ref: an Update of the row
        return entity_set, "update"
    if method == "DELETE":
        return entity_set, "delete"
    return entity_set, ("update" if method == "PUT" else "upsert")


def _select(select: Sequence[str] | None) -> dict[str, str] | None:
    return {"$select": ",".join(select)} if select else None


def _tag(tag: str | None) -> dict[str, str] | None:
    return {"tag": tag} if tag else None


def _with_annotations(headers: Mapping[str, str] | None) -> dict[str, str]:
    send = dict(headers or {})
    send.setdefault("Prefer", ANNOTATIONS)
    return send


def _entity_id(response: httpx.Response) -> str:
    entity_id = response.headers.get("OData-EntityId", "")
    match = _ENTITY_ID.search(entity_id)
    if not match:
        raise ValidationFailed(f"no row id in OData-EntityId {entity_id!r}", status=response.status_code,
                               text=response.text, method=response.request.method, url=str(response.request.url))
    return match.group(1)


def _id_from_row(entity_set: str, row: Mapping[str, Any]) -> str:
    # Without OData-EntityId the primary id is the one guid-valued `<table>id` column of the row.
    for name, value in row.items():
        if name.endswith("id") and not name.startswith("_") and isinstance(value, str) and len(value) == 36:
            return value
    raise ValidationFailed(f"{entity_set}: upsert answered without a row id")
