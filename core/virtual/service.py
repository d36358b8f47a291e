"""The OData v4 service over the virtual tables: one call, `serve(request)`, from a plain request to a plain reply.

The entry point (functions/odata.py) only turns the Functions request into a `Request` and the `Reply` back; the
key check, routing, query options, paging, counting and writes are all here, testable without a host."""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from azure.core.exceptions import AzureError

from core.connectors import jsonwire
from core.errors import BadInput
from core.ops.principal import HEADER as PRINCIPAL_HEADER
from core.ops.principal import principal_roles
from core.virtual.csdl import metadata_xml, service_document
from core.virtual.filter import And, Compare, Const, Node, Not, Or, all_of, conjuncts, matches, simplify, walk
from core.virtual.keys import KeyIndex, RecentIds, id_of, key_of, typed_key
from core.virtual.model import Column, DerivedKey, GuidColumnKey, VirtualTable
from core.virtual.query import Query, parse_query, skiptoken_of
from core.virtual.source import Row, SourceError, VirtualSource
from core.virtual.values import from_json, key_text

log = logging.getLogger(__name__)

JSON = "application/json; odata.metadata=minimal; charset=utf-8"
PROBLEM = "application/problem+json"
_BY_KEY = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?:[A-Za-z_][A-Za-z0-9_]*=)?(?P<key>[^()]*)\)$")
_SET = re.compile(r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?P<count>/\$count)?$")


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # after the service root, e.g. "", "$metadata", "Products", "Products(1b0c...)", URL-decoded
    base_url: str  # the service root as the caller reached it, ending in "/"
    params: Mapping[str, str] = field(default_factory=dict)  # query string, URL-decoded
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """An answer other than 2xx, with what to tell the caller."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def problem(status: int, title: str, detail: str, **extra: Any) -> Reply:
    """RFC 9457 problem+json, plus OData's `error` object: Dataverse's provider and OData clients read
    `error.message`, which lands in the plug-in trace log in words a user understands."""
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
        "error": {"code": str(status), "message": detail},
    }
    return Reply(status, json.dumps(body).encode(), PROBLEM, {"OData-Version": "4.0"})


def _bad(error: BadInput) -> Reply:
    return problem(400, "Bad request", str(error), invalid_params=[{"name": error.field, "reason": str(error)}])


@dataclass(frozen=True)
class KeyCheck:
    """The shared key a data source sends as one of its request parameters (header or query string). In Azure, with
    App Service authentication (Entra ID) in front and `app_role` set, a caller it signed in with that app role is
    served without the key (other clients of the service: Dataverse's data source can only send fixed parameters)."""

    key: str | None
    header: str = "x-vt-key"
    param: str = "vtkey"
    app_role: str | None = None

    def allows(self, request: Request) -> bool:
        if self.app_role and (principal := request.headers.get(PRINCIPAL_HEADER)):
            try:
                if self.app_role in principal_roles(principal):
                    return True
            except ValueError:
                pass  # unreadable: the key decides
        given = request.headers.get(self.header.lower()) or request.params.get(self.param) or ""
        if not self.key:
            return False  # no key set: the service serves nobody rather than everybody
        return hmac.compare_digest(given.encode(), self.key.encode())


class VirtualService:
    def __init__(
        self,
        tables: Sequence[VirtualTable],
        sources: Callable[[VirtualTable], VirtualSource],
        index: KeyIndex,
        keys: KeyCheck,
    ) -> None:
        self.tables = {t.entity_set: t for t in tables}
        self._source_of = sources
        self._sources: dict[str, VirtualSource] = {}
        self.index = index
        self.keys = keys
        self.recent = RecentIds()

    def source(self, table: VirtualTable) -> VirtualSource:
        if table.entity_set not in self._sources:
            self._sources[table.entity_set] = self._source_of(table)
        return self._sources[table.entity_set]

    async def aclose(self) -> None:
        """Every client the service made: its sources', what builds them (core.virtual.app.Sources) and the index."""
        for source in self._sources.values():
            await source.aclose()
        self._sources.clear()
        close_maker = getattr(self._source_of, "aclose", None)
        if close_maker is not None:
            await close_maker()
        await self.index.aclose()

    # ---- the one entry ---------------------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Reply:
        if not self.keys.allows(request):
            return problem(
                401,
                "Unauthenticated",
                f"send the service key in the {self.keys.header} header or the "
                f"{self.keys.param} query parameter (a request parameter of the data source)",
            )
        try:
            return await self._route(request)
        except BadInput as error:
            return _bad(error)
        except Refused as error:
            return problem(error.status, error.title, error.detail, **error.extra)
        except SourceError as error:
            title = "Conflict" if error.status == 409 else "Source failed"
            return problem(error.status, title, str(error))
        except RecursionError:  # a filter of hundreds of nested or/and, deeper than the SQL compiler goes
            return _bad(BadInput("$filter", "$filter is nested too deeply for the source; use fewer and/or terms"))
        except AzureError as error:  # the reverse id index (Table Storage) did not answer: worth retrying
            log.warning("virtual tables: Table Storage failed: %s", type(error).__name__)
            return problem(
                503,
                "Dependency unavailable",
                f"the id index in Table Storage did not answer "
                f"({type(error).__name__}); nothing was changed by this request, send it again",
            )

    async def _route(self, request: Request) -> Reply:
        path = request.path.strip("/")
        method = request.method.upper()
        if path == "":
            return self._json(service_document(request.base_url, list(self.tables.values())))
        if path == "$metadata":
            return Reply(
                200, metadata_xml(list(self.tables.values())).encode(), "application/xml", {"OData-Version": "4.0"}
            )
        by_key = _BY_KEY.match(path)
        if by_key:
            table = self._table(by_key["set"])
            row_id = self._guid(table, by_key["key"])
            if method == "GET":
                return await self.read_one(request, table, row_id)
            if method == "PATCH" or method == "PUT":
                return await self.update(request, table, row_id)
            if method == "DELETE":
                return await self.delete(table, row_id)
            raise Refused(405, "Method not allowed", f"{method} is not allowed on one row (GET, PATCH, DELETE are)")
        collection = _SET.match(path)
        if collection:
            table = self._table(collection["set"])
            if method == "GET":
                if collection["count"]:
                    return await self.count_only(request, table)
                return await self.read_many(request, table)
            if method == "POST" and not collection["count"]:
                return await self.create(request, table)
            raise Refused(405, "Method not allowed", f"{method} is not allowed on {path} (GET and POST are)")
        raise Refused(
            404,
            "Not found",
            f"{path!r} is no resource of this service: use an entity set name "
            f"({', '.join(self.tables)}), Set(<guid>), or $metadata",
        )

    def _table(self, name: str) -> VirtualTable:
        table = self.tables.get(name)
        if table is None:
            raise Refused(
                404,
                "Not found",
                f"no entity set {name!r} (entity set names are case-sensitive; this "
                f"service has {', '.join(self.tables) or 'none'})",
            )
        return table

    @staticmethod
    def _guid(table: VirtualTable, text: str) -> uuid.UUID:
        text = text.strip()
        if text.startswith("guid'") and text.endswith("'"):
            text = text[5:-1]
        try:
            return uuid.UUID(text.strip("'"))
        except ValueError:
            raise BadInput("key", f"{table.entity_set}({text}): the key must be a GUID (Edm.Guid)") from None

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None, ieee754: bool = False) -> Reply:
        kind = JSON.replace("; charset", "; IEEE754Compatible=true; charset") if ieee754 else JSON
        return Reply(status, jsonwire.dumps(body), kind, {"OData-Version": "4.0", **(headers or {})})

    # ---- reads -----------------------------------------------------------------------------------------------------

    def _wire(self, table: VirtualTable, row: Row, select: Sequence[str] | None, request: Request) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(table.key, DerivedKey):
            out[table.key.id_name] = id_of(table, row)
        as_text = _ieee754(request)
        for column in table.columns:
            if select is None or column.name in select or column.name == table.id_name:
                value = row.get(column.name)
                if as_text and value is not None and column.type in ("Edm.Decimal", "Edm.Int64"):
                    value = format(value, "f") if isinstance(value, Decimal) else str(value)
                out[column.name] = value
        return out

    async def _remember(self, table: VirtualTable, rows: Sequence[Row]) -> None:
        if not isinstance(table.key, DerivedKey) or not rows:
            return
        pairs = {id_of(table, row): key_of(table, row) for row in rows}
        new = self.recent.new(table.entity_set, list(pairs))
        if new:
            await self.index.remember(table, [(i, pairs[i]) for i in new])
            self.recent.add(table.entity_set, new)

    async def _key(self, table: VirtualTable, row_id: uuid.UUID) -> dict[str, Any]:
        if isinstance(table.key, GuidColumnKey):
            return {table.key.column: row_id}
        key = await self.index.find(table, row_id)
        if key is None:
            raise Refused(404, "Not found", f"{table.entity_set} has no row with id {row_id}")
        return key

    async def read_one(self, request: Request, table: VirtualTable, row_id: uuid.UUID) -> Reply:
        query = parse_query(request.params, table)
        row = await self.source(table).get(await self._key(table, row_id))
        if row is None:
            raise Refused(404, "Not found", f"{table.entity_set} has no row with id {row_id}")
        body = {
            "@odata.context": f"{request.base_url}$metadata#{table.entity_set}/$entity",
            **self._wire(table, row, query.select, request),
        }
        return self._json(body, ieee754=_ieee754(request))

    async def _resolve_ids(self, table: VirtualTable, node: Node | None) -> Node | None:
        """A derived id in a filter (`OrderLineId eq <guid>`, as Dataverse filters on a table's primary key) is no
        source column: it becomes equality on the key the reverse index holds for it, or false for an id it does
        not know (no row has it)."""
        if node is None or not isinstance(table.key, DerivedKey):
            return node
        key_columns = table.key.columns

        async def resolve(part: Node) -> Node:
            match part:
                case And() | Or():
                    return type(part)(await resolve(part.left), await resolve(part.right))
                case Not():
                    return Not(await resolve(part.operand))
                case Compare() if part.column == table.id_name:
                    key = await self.index.find(table, part.value)
                    equal = None if key is None else all_of([Compare("eq", n, key[n]) for n in key_columns])
                    found: Node = Const(False) if equal is None else equal
                    return found if part.op == "eq" else Not(found)
            return part

        return simplify(await resolve(node))

    def _plan(self, table: VirtualTable, query: Query) -> tuple[Node | None, Node | None, list[tuple[str, bool]]]:
        """What the source runs (filter), what Python must run after it, and the full order (the caller's, then
        the key, so pages never overlap or skip a row)."""
        source = self.source(table)
        pushed: list[Node] = []
        kept: list[Node] = []
        for part in conjuncts(query.filter):
            (pushed if source.pushable(part) else kept).append(part)
        order = list(query.orderby)
        key_names = [table.key.column] if isinstance(table.key, GuidColumnKey) else table.key.columns
        order += [(name, False) for name in key_names if name not in {n for n, _ in order}]
        return all_of(pushed), all_of(kept), order

    async def _bounded(self, table: VirtualTable, where: Node | None, why: str, option: str) -> list[Row]:
        """Every row passing `where`, when there are few enough to finish the query here; else a 400 saying so."""
        source = self.source(table)
        total = await source.count(where)
        if total > table.python_filter_limit:
            raise BadInput(
                option,
                f"{option}: {why}; it can run here only on at most {table.python_filter_limit} "
                f"rows, and {total} match the rest of the query. Add a filter the source runs (e.g. eq "
                f"on a key column) to narrow it",
            )
        return await source.rows(where, [], 0, None)

    async def read_many(self, request: Request, table: VirtualTable) -> Reply:
        query = parse_query(request.params, table)
        query = replace(query, filter=await self._resolve_ids(table, query.filter))
        if isinstance(query.filter, Const) and not query.filter.value:
            return self._json(self._page_body(request, table, query, [], 0))
        if isinstance(query.filter, Const):
            query = replace(query, filter=None)
        where, kept, order = self._plan(table, query)
        after = self._after(table, query)
        source = self.source(table)
        # A page: the caller's $top, else the caller's Prefer: odata.maxpagesize, else the table's page size;
        # never more than max_page_size (the rest of a larger $top follows behind the next link).
        preferred = _max_page_size(request.headers)
        wanted = preferred or table.page_size if query.top is None else min(query.top, preferred or query.top)
        page = min(wanted, table.max_page_size)
        count: int | None = None
        if kept is None and source.orders(order):
            rows = (
                await source.rows(all_of([n for n in (where, after) if n]), order, query.skip, page + 1) if page else []
            )
            if query.count:
                count = await source.count(where)
        else:
            if kept is not None:
                names = sorted({n.column for n in walk(kept) if hasattr(n, "column")})
                why = f"the source cannot run the filter on {', '.join(names)}"
                option = "$filter"
            else:
                why = f"the source cannot order by {', '.join(n for n, _ in query.orderby)}"
                option = "$orderby"
            rows = [r for r in await self._bounded(table, where, why, option) if kept is None or matches(kept, r)]
            rows = _sorted(rows, order)
            count = len(rows)
            rows = [r for r in rows if after is None or matches(after, r)][query.skip : query.skip + page + 1]
        more = len(rows) > page and (query.top is None or query.top > page)
        rows = rows[:page]
        await self._remember(table, rows)
        body = self._page_body(request, table, query, rows, count)
        if more:
            top_left = None if query.top is None else query.top - page
            last = key_of(table, rows[-1])
            if not query.orderby and all(v is not None for v in last.values()):
                token = skiptoken_of(0, top_left, [key_text(v) for v in last.values()])
            else:
                token = skiptoken_of(query.skip + page, top_left)
            body["@odata.nextLink"] = self._next_link(request, table, token)
        return self._json(body, ieee754=_ieee754(request))

    def _after(self, table: VirtualTable, query: Query) -> Node | None:
        """The rows after a key-ordered token's key: k1 > v1, or k1 = v1 and k2 > v2, ... (composite keys)."""
        if query.after is None:
            return None
        names = [table.key.column] if isinstance(table.key, GuidColumnKey) else table.key.columns
        try:
            values = [typed_key(self._column(table, n).type, text) for n, text in zip(names, query.after, strict=True)]
        except (ValueError, BadInput):
            raise BadInput(
                "$skiptoken", "$skiptoken is not one this service made; follow @odata.nextLink as given"
            ) from None
        options: list[Node] = []
        for i, name in enumerate(names):
            equal: list[Node] = [Compare("eq", n, v) for n, v in zip(names[:i], values[:i], strict=True)]
            options.append(all_of([*equal, Compare("gt", name, values[i])]))  # type: ignore[arg-type]
        result = options[0]
        for option in options[1:]:
            result = Or(result, option)
        return result

    @staticmethod
    def _column(table: VirtualTable, name: str) -> Column:
        column = table.column(name)
        assert column is not None  # key columns are columns (VirtualTable checks it)
        return column

    def _page_body(
        self, request: Request, table: VirtualTable, query: Query, rows: Sequence[Row], count: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"@odata.context": f"{request.base_url}$metadata#{table.entity_set}"}
        if query.count:
            body["@odata.count"] = count
        body["value"] = [self._wire(table, row, query.select, request) for row in rows]
        return body

    def _next_link(self, request: Request, table: VirtualTable, token: str) -> str:
        options = {k: v for k, v in request.params.items() if k.lower() not in ("$top", "$skip", "$skiptoken")}
        options["$skiptoken"] = token
        return f"{request.base_url}{table.entity_set}?{urlencode(options)}"

    async def count_only(self, request: Request, table: VirtualTable) -> Reply:
        query = parse_query(request.params, table)
        query = replace(query, filter=await self._resolve_ids(table, query.filter))
        if isinstance(query.filter, Const):
            if not query.filter.value:
                return Reply(200, b"0", "text/plain", {"OData-Version": "4.0"})
            query = replace(query, filter=None)
        where, kept, _ = self._plan(table, query)
        if kept is None:
            total = await self.source(table).count(where)
        else:
            rows = await self._bounded(table, where, "the source cannot run part of the filter", "$filter")
            total = sum(1 for r in rows if matches(kept, r))
        return Reply(200, str(total).encode(), "text/plain", {"OData-Version": "4.0"})

    # ---- writes ----------------------------------------------------------------------------------------------------

    def _allowed(self, table: VirtualTable, operation: str) -> None:
        if operation not in table.operations:
            raise Refused(
                405,
                "Operation not allowed",
                f"{table.entity_set} does not allow {operation} (its definition allows {', '.join(table.operations)})",
            )

    def _values(self, table: VirtualTable, body: bytes, creating: bool) -> dict[str, Any]:
        try:
            data = jsonwire.loads(body or b"{}")
        except ValueError as error:
            raise BadInput("body", f"the body is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise BadInput("body", "the body must be a JSON object of property values")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name.startswith("@") or "@odata." in name:
                continue  # annotations (@odata.type, ...)
            if isinstance(table.key, DerivedKey) and name == table.key.id_name:
                continue  # the id follows from the key columns; Dataverse's proposal cannot be kept
            column = table.column(name)
            if column is None:
                raise BadInput(name, f"{table.entity_set} has no property {name!r}")
            values[name] = from_json(column, value)
        if creating:
            key_names = [] if isinstance(table.key, GuidColumnKey) else table.key.columns
            missing = [
                c.name
                for c in table.columns
                if (not c.nullable or c.name in key_names) and values.get(c.name) is None and c.name != table.id_name
            ]
            if missing:
                raise BadInput(missing[0], f"{', '.join(missing)} required to create a {table.entity_set} row")
        return values

    async def create(self, request: Request, table: VirtualTable) -> Reply:
        self._allowed(table, "create")
        values = self._values(table, request.body, creating=True)
        row = await self.source(table).create(values)
        await self._remember(table, [row])
        row_id = id_of(table, row)
        body = {
            "@odata.context": f"{request.base_url}$metadata#{table.entity_set}/$entity",
            **self._wire(table, row, None, request),
        }
        location = f"{request.base_url}{table.entity_set}({row_id})"
        return self._json(body, 201, {"Location": location, "OData-EntityId": location}, _ieee754(request))

    async def update(self, request: Request, table: VirtualTable, row_id: uuid.UUID) -> Reply:
        self._allowed(table, "update")
        key = await self._key(table, row_id)
        values = self._values(table, request.body, creating=False)
        changed = [n for n in key if n in values and values[n] != key[n]]
        if changed:
            raise BadInput(
                changed[0],
                f"{', '.join(changed)} is part of the row's key and cannot change (create a new row instead)",
            )
        values = {n: v for n, v in values.items() if n not in key}
        if not await self.source(table).update(key, values):
            raise Refused(404, "Not found", f"{table.entity_set} has no row with id {row_id}")
        return Reply(204, headers={"OData-Version": "4.0"})

    async def delete(self, table: VirtualTable, row_id: uuid.UUID) -> Reply:
        self._allowed(table, "delete")
        key = await self._key(table, row_id)
        if not await self.source(table).delete(key):
            raise Refused(404, "Not found", f"{table.entity_set} has no row with id {row_id}")
        return Reply(204, headers={"OData-Version": "4.0"})


def _max_page_size(headers: Mapping[str, str]) -> int | None:
    found = re.search(r"odata\.maxpagesize=(\d+)", headers.get("prefer", ""))
    return int(found.group(1)) or None if found else None


def _sorted(rows: list[Row], order: Sequence[tuple[str, bool]]) -> list[Row]:
    """Rows in `order`, nulls first ascending (as SQLite, SQL Server and Dataverse sort them)."""
    for name, descending in reversed(order):
        present = sorted((r for r in rows if r.get(name) is not None), key=lambda r: r[name], reverse=descending)
        absent = [r for r in rows if r.get(name) is None]
        rows = present + absent if descending else absent + present
    return rows


def _ieee754(request: Request) -> bool:
    """OData JSON's IEEE754Compatible=true (in Accept or Content-Type): Edm.Int64 and Edm.Decimal travel as strings,
    for clients whose numbers are doubles."""
    asked = (request.headers.get("accept", "") + ";" + request.headers.get("content-type", "")).lower()
    return "ieee754compatible=true" in asked.replace(" ", "")
