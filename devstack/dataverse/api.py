"""The Web API dispatcher: one entry point (`WebApi.handle`) for every request, also used for each part of
a `$batch`. Reads (retrieve, query, paging, change tracking, metadata) and writes (create, update,
upsert, delete, the *Multiple actions) in Web API shape."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

from devstack.dataverse.auth import BUSINESS_UNIT_ID, ORGANIZATION_ID
from devstack.dataverse.batch import InnerRequest, InnerResponse
from devstack.dataverse.csdl import csdl
from devstack.dataverse.errors import DataverseError, bad_request, does_not_exist
from devstack.dataverse.metadata import handle_metadata
from devstack.dataverse.query import (
    COUNT_LIMIT,
    PRIMARY,
    encode_deltatoken,
    encode_skiptoken,
    key_lookups,
    page,
    parse_expand,
    parse_query,
    parse_select,
    select_rows,
)
from devstack.dataverse.records import API_PREFIX, OperationContext, Pipeline, Records
from devstack.dataverse.represent import FORMATTED, etag, represent, wants_annotation
from devstack.dataverse.resources import KeyMatch, split_path
from devstack.dataverse.schema import Schema, Table
from devstack.dataverse.store import Database
from devstack.dataverse.virtual import VirtualTables
from devstack.dataverse.vtevents import action_of, on_external, register_filters
from devstack.dataverse.wire import dumps, loads
from devstack.querycache import QueryCache

log = logging.getLogger("devstack.dataverse")
JSON = "application/json; odata.metadata=minimal"
ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")


def prefer_items(headers: dict[str, str]) -> dict[str, str]:
    """`Prefer` as {name: value}; values unquoted. Several headers or comma-separated items."""
    out: dict[str, str] = {}
    raw = headers.get("prefer", "")
    for item in raw.split(","):
        name, _, value = item.strip().partition("=")
        if name:
            out[name.strip().lower()] = value.strip().strip('"')
    return out


class WebApi:
    def __init__(self, db: Database, schema: Schema, records: Records, events: Pipeline | None = None) -> None:
        self.db = db
        self.schema = schema
        self.records = records
        # Where OnExternal* actions queue their webhook steps (the webhook pipeline: they write no row).
        self.events = events or records.pipeline
        self.virtual = VirtualTables(db, schema)
        self._csdl: bytes | None = None
        self._selections: QueryCache[list[tuple[str, int, dict[str, Any]]]] = QueryCache()

    # -- dispatch ----------------------------------------------------------------------------------------

    async def handle(self, req: InnerRequest, ctx: OperationContext, base: str) -> InnerResponse:
        headers = {k.lower(): v for k, v in req.headers.items()}
        annotations = "odata.include-annotations" in headers.get("prefer", "")
        try:
            return await self._dispatch(req, headers, ctx, base)
        except DataverseError as exc:
            return InnerResponse(exc.status, {"Content-Type": JSON, "OData-Version": "4.0", **exc.headers},
                                 dumps(exc.body(annotations)).encode())
        except Exception:
            log.exception("unexpected error on %s %s", req.method, req.url)
            exc = DataverseError(500, "0x80040216", "An unexpected error occurred.")
            return InnerResponse(500, {"Content-Type": JSON}, dumps(exc.body(annotations)).encode())

    def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> InnerResponse:
        return InnerResponse(status, {"Content-Type": JSON, "OData-Version": "4.0", **(extra or {})},
                             dumps(payload).encode())

    async def _dispatch(
        self, req: InnerRequest, headers: dict[str, str], ctx: OperationContext, base: str
    ) -> InnerResponse:
        path, _, query_string = req.url.partition("?")
        params = dict(parse_qsl(query_string, keep_blank_values=True))
        method = req.method.upper()
        if path in ("", "/"):
            return self._json(200, {"@odata.context": f"{base}$metadata", "value": [
                {"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in self.schema.tables.values()
            ]})
        if path.rstrip("()") == "WhoAmI":
            return self._json(200, {
                "@odata.context": f"{base}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": BUSINESS_UNIT_ID, "UserId": ctx.caller.systemuserid,
                "OrganizationId": ORGANIZATION_ID,
            })
        if path == "EntityDefinitions" and method == "POST":
            return await self._define_virtual(req, ctx, base)
        if method == "POST" and action_of(path):
            bound = self.schema.table_for_set(path.split("/", 1)[0]) if "/" in path else None
            await on_external(self.records, self.events, self.db, action_of(path) or "", loads(req.body or b"{}"),
                              bound, ctx)
            return InnerResponse(204, {"OData-Version": "4.0"}, b"")
        if path.startswith("EntityDefinitions"):
            if method != "GET":
                raise DataverseError(405, "0x80060888", "The simulator's metadata is read-only.")
            return self._json(200, handle_metadata(self.schema, path, params, base))
        if path == "$metadata":
            if self._csdl is None:
                self._csdl = csdl(self.schema)
            return InnerResponse(200, {"Content-Type": "application/xml", "OData-Version": "4.0"}, self._csdl)
        target = split_path(path)
        table = self.schema.table_for_set(target.entity_set)
        prefer = prefer_items(headers)
        prefer_raw = headers.get("prefer")
        if table.virtual is not None:
            return await self.virtual.handle(table, method, target.key, target.rest, params, prefer, req.body or b"",
                                             base, path)
        if target.key is None:
            if not target.rest:
                if method == "GET":
                    return self._query(table, params, prefer, prefer_raw, base, path)
                if method == "POST":
                    return await self._create(table, req, params, prefer, prefer_raw, ctx, base)
            elif target.rest == ["$count"] and method == "GET":
                return InnerResponse(200, {"Content-Type": "text/plain", "OData-Version": "4.0"},
                                     str(min(self.db.count(table.logical_name), COUNT_LIMIT)).encode())
            elif len(target.rest) == 1 and method == "POST":
                action = target.rest[0].removeprefix("Microsoft.Dynamics.CRM.")
                if action in ACTIONS:
                    return await self._multiple(table, action, req, ctx, base)
            raise DataverseError(405, "0x80060888", f"{method} is not supported on '{path}'.")
        match = self.records.locate(table, target.key)
        if target.rest and method == "DELETE":
            return await self._clear(table, match, target.rest, headers, ctx)
        if target.rest:
            return self._related(table, match, target.rest, params, prefer_raw, base)
        if method == "GET":
            return self._retrieve(table, match, params, headers, prefer_raw, base)
        if method == "PATCH":
            return await self._patch(table, match, req, params, headers, prefer, prefer_raw, ctx, base)
        if method == "DELETE":
            if match.row_id is None:
                raise self._missing(table, match)
            async with self.db.unit():
                await self.records.delete(table, match.row_id, ctx, if_match=headers.get("if-match"))
            return InnerResponse(204, {"OData-Version": "4.0"}, b"")
        raise DataverseError(405, "0x80060888", f"{method} is not supported on '{path}'.")

    async def _define_virtual(self, req: InnerRequest, ctx: OperationContext, base: str) -> InnerResponse:
        """POST EntityDefinitions: the simulator creates virtual tables only (its other tables come from
        schema.json)."""
        body = loads(req.body or b"{}")
        async with self.db.unit():
            table = self.virtual.define(body)
            try:
                await register_filters(self.records, table, ctx)
            except BaseException:
                self.schema.tables.pop(table.logical_name, None)
                self.schema.by_set.pop(table.entity_set, None)
                raise
        self._csdl = None
        assert table.virtual is not None
        return InnerResponse(204, {"OData-Version": "4.0",
                                   "OData-EntityId": f"{base}EntityDefinitions({table.virtual.metadata_id})"}, b"")

    # -- reads ---------------------------------------------------------------------------------------------------

    def _missing(self, table: Table, match: KeyMatch) -> DataverseError:
        if match.by_primary:
            return does_not_exist(table.logical_name, match.values[table.primary_id])
        return DataverseError(404, "0x80060891",
                              f"A record with the specified key values does not exist in {table.logical_name} entity")

    def _context_url(self, base: str, table: Table, select: list[Any] | None, *, entity: bool) -> str:
        cols = f"({','.join(c.value_property for c in select)})" if select else ""
        return f"{base}$metadata#{table.entity_set}{cols}" + ("/$entity" if entity else "")

    def _row_json(self, table: Table, version: int, row: dict[str, Any], select: Any, prefer_raw: str | None,
                  expand: dict[str, str | None] | None = None) -> Any:
        out = represent(table, version, row, select, prefer_raw, self.records.name_of)
        for nav, nav_select in (expand or {}).items():
            column, target = table.navigation[nav]
            value = row.get(column.name)
            found = self.db.get(target, value.id) if value is not None and value.table == target else None
            if found is None:
                out[nav] = None
                continue
            target_table = self.schema.table(target)
            out[nav] = represent(target_table, found[0], target_table.decode(found[1]),
                                 parse_select(nav_select, target_table), prefer_raw, self.records.name_of)
        return out

    def _expand(self, table: Table, params: dict[str, str]) -> dict[str, str | None]:
        """Single-valued navigation properties only (lookups), with an optional nested $select."""
        expand = parse_expand(params.get("$expand"))
        for nav, nav_select in expand.items():
            if nav not in table.navigation:
                raise bad_request(
                    f"Could not find a property named '{nav}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'"
                    " (the simulator expands single-valued navigation properties only)."
                )
            parse_select(nav_select, self.schema.table(table.navigation[nav][1]))
        return expand

    def _retrieve(self, table: Table, match: KeyMatch, params: dict[str, str], headers: dict[str, str],
                  prefer_raw: str | None, base: str) -> InnerResponse:
        expand = self._expand(table, params)
        if match.row_id is None:
            raise self._missing(table, match)
        found = self.records.get(table, match.row_id)
        if found is None:
            raise self._missing(table, match)
        version, row = found
        if headers.get("if-none-match") not in (None, "null") and headers["if-none-match"] == etag(version):
            return InnerResponse(304, {"OData-Version": "4.0"}, b"")
        select = parse_select(params.get("$select"), table)
        payload = {"@odata.context": self._context_url(base, table, select, entity=True),
                   **self._row_json(table, version, row, select, prefer_raw, expand)}
        return self._json(200, payload, {"ETag": etag(version)})

    async def _clear(self, table: Table, match: KeyMatch, rest: list[str], headers: dict[str, str],
                     ctx: OperationContext) -> InnerResponse:
        """`DELETE accounts(id)/primarycontactid/$ref` (disassociate) or `DELETE accounts(id)/telephone1`."""
        if match.row_id is None:
            raise self._missing(table, match)
        if len(rest) == 2 and rest[1] == "$ref" and rest[0] in table.navigation:
            column = table.navigation[rest[0]][0]
        elif len(rest) == 1 and rest[0] in table.columns and not table.columns[rest[0]].is_lookup:
            column = table.columns[rest[0]]
        else:
            raise DataverseError(405, "0x80060888", f"DELETE is not supported on '{'/'.join(rest)}'.")
        if column.read_only or column.name == table.primary_id:
            raise bad_request(f"The column '{column.name}' cannot be cleared.")
        async with self.db.unit():
            await self.records.update(table, match.row_id, {column.name: None}, ctx, if_match=headers.get("if-match"))
        return InnerResponse(204, {"OData-Version": "4.0"}, b"")

    def _related(self, table: Table, match: KeyMatch, rest: list[str], params: dict[str, str],
                 prefer_raw: str | None, base: str) -> InnerResponse:
        if match.row_id is None:
            raise self._missing(table, match)
        name = rest[0]
        relationship = next((r for r in table.relationships if r.name == name), None)
        if relationship is not None:
            child = self.schema.table(relationship.table)
            select = parse_select(params.get("$select"), child)
            rows = [
                (rid, v, child.decode(d)) for rid, v, d in self.db.scan(child.logical_name)
                if (d.get(relationship.column) or [None, None])[1] == match.row_id
            ]
            query = parse_query({k: v for k, v in params.items() if k != "$select"}, child)
            rows = select_rows(child, rows, query)
            return self._json(200, {
                "@odata.context": self._context_url(base, child, select, entity=False),
                "value": [self._row_json(child, v, r, select, prefer_raw) for _, v, r in rows],
            })
        column = table.by_value_property.get(name)
        if column is not None and len(rest) == 1:
            found = self.records.get(table, match.row_id)
            assert found is not None
            value = found[1].get(column.name)
            value = value.id if column.is_lookup and value is not None else value
            return self._json(200, {"@odata.context": f"{base}$metadata#{table.entity_set}({match.row_id})/{name}",
                                    "value": value})
        raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{name}'.")

    def _query(self, table: Table, params: dict[str, str], prefer: dict[str, str], prefer_raw: str | None,
               base: str, path: str) -> InnerResponse:
        expand = self._expand(table, params)
        query = parse_query(params, table)
        tracking = "odata.track-changes" in prefer
        if (tracking or query.deltatoken is not None) and not table.change_tracking:
            raise DataverseError(
                400, "0x80072491", f"Entity '{table.logical_name}' is not enabled for change tracking."
            )
        if (tracking or query.deltatoken is not None) and (
                query.filter is not None or query.orderby or query.top is not None or expand):
            raise bad_request("$filter, $orderby, $expand and $top are not supported with change tracking.")
        max_page = None
        if "odata.maxpagesize" in prefer:
            try:
                max_page = int(prefer["odata.maxpagesize"])
                if max_page <= 0:
                    raise ValueError
            except ValueError:
                raise bad_request(f"Invalid odata.maxpagesize '{prefer['odata.maxpagesize']}'.") from None
        applied = []
        if max_page is not None:
            applied.append(f"odata.maxpagesize={min(max_page, 5000)}")
        if query.deltatoken is not None:
            return self._delta(table, query, prefer_raw, base, params, max_page)
        snapshot = self.db.current_version()
        if query.skiptoken and "dv" in query.skiptoken:
            snapshot = int(query.skiptoken["dv"])
        candidates = self._key_candidates(table, query)
        if candidates is not None:  # rows read by key: cheap to answer again, so not kept (nor evicting a scan)
            rows = self._select(table, query, candidates)
        else:
            rows = self._selections.get((table.logical_name, params.get("$filter"), params.get("$orderby")),
                                        self.db.stamps[table.logical_name], lambda: self._select(table, query))
        chunk, next_state = page(rows, query, max_page)
        chunk = [(rid, v, table.decode(d)) for rid, v, d in chunk]
        payload: dict[str, Any] = {"@odata.context": self._context_url(base, table, query.select, entity=False)}
        if query.count:
            payload["@odata.count"] = min(len(rows), COUNT_LIMIT)
            if len(rows) > COUNT_LIMIT:
                payload["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = True
        payload["value"] = [self._row_json(table, v, r, query.select, prefer_raw, expand) for _, v, r in chunk]
        keep = {k: v for k, v in params.items() if k != "$skiptoken"}
        if next_state is not None:
            if tracking:
                next_state["dv"] = snapshot
            link = urlencode({**keep, "$skiptoken": encode_skiptoken(next_state)}, safe="$,'()=:")
            payload["@odata.nextLink"] = f"{base}{path}?{link}"
        elif tracking:
            delta = {k: v for k, v in keep.items() if k == "$select"}
            delta["$deltatoken"] = encode_deltatoken(snapshot)
            payload["@odata.deltaLink"] = f"{base}{path}?{urlencode(delta, safe='$,!:/ ')}".replace(" ", "%20")
        if tracking:
            applied.append("odata.track-changes")
        extra = {"Preference-Applied": ",".join(applied)} if applied else {}
        if wants_annotation(prefer_raw, FORMATTED):
            extra["Preference-Applied"] = ",".join([*applied, f'odata.include-annotations="{FORMATTED}"'])
        return self._json(200, payload, extra)

    def _key_candidates(self, table: Table, query: Any) -> list[str] | None:
        """The ids of the only rows a filter naming whole keys (query.key_lookups) can match, found in the key
        index; None when the filter needs the scan."""
        lookups = key_lookups(table, query.filter) if query.filter is not None else None
        if lookups is None:
            return None
        ids = self.db.find_by_keys(table.logical_name, [k for k in lookups if k[0] != PRIMARY])
        ids.update(row_id for name, row_id in lookups if name == PRIMARY)
        return sorted(ids)

    def _select(self, table: Table, query: Any, candidates: list[str] | None = None
                ) -> list[tuple[str, int, dict[str, Any]]]:
        """The stored rows a query answers, in its order (kept by the query cache between pages; stored rows,
        not decoded ones, so a cached answer costs no more memory than its list). With `candidates` only those
        rows are read (the ones that exist), and filtered, ordered and paged exactly as a scan would be."""
        if candidates is None:
            rows = list(self.db.scan(table.logical_name))
        else:
            rows = self.db.get_many(table.logical_name, candidates)
        stored = {rid: d for rid, _, d in rows}
        decoded = [(rid, v, table.decode(d)) for rid, v, d in rows]
        return [(rid, v, stored[rid]) for rid, v, _ in select_rows(table, decoded, query)]

    def _delta(self, table: Table, query: Any, prefer_raw: str | None, base: str,
               params: dict[str, str], max_page: int | None) -> InnerResponse:
        """Changes since the token up to a snapshot version (kept across pages, so a change made while
        paging is reported by the next delta instead of shifting pages): changed rows, then deletions."""
        snapshot = int(query.skiptoken["dv"]) if query.skiptoken and "dv" in query.skiptoken \
            else self.db.current_version()
        entries = [e for e in self.db.changes_since(table.logical_name, query.deltatoken) if e[1] <= snapshot]
        current = {e[0]: self.records.get(table, e[0]) for e in entries if e[2] != "delete"}
        changed = [e for e in entries if current.get(e[0]) is not None]
        deleted = [e for e in entries if current.get(e[0]) is None]
        chunk, next_state = page([*changed, *deleted], query, max_page)
        value = []
        for row_id, _, _ in chunk:
            found = current.get(row_id)
            if found is None:
                value.append({"@odata.context": f"{base}$metadata#{table.entity_set}/$deletedEntity",
                              "id": row_id, "reason": "deleted"})
            else:
                value.append(self._row_json(table, found[0], found[1], query.select, prefer_raw))
        payload: dict[str, Any] = {
            "@odata.context": self._context_url(base, table, query.select, entity=False) + "/$delta",
            "value": value,
        }
        link = {k: v for k, v in params.items() if k == "$select"}
        if next_state is not None:
            next_state["dv"] = snapshot
            link["$deltatoken"] = params["$deltatoken"]
            link["$skiptoken"] = encode_skiptoken(next_state)
            payload["@odata.nextLink"] = f"{base}{table.entity_set}?{urlencode(link, safe='$,!:/ ')}".replace(
                " ", "%20")
        else:
            link["$deltatoken"] = encode_deltatoken(snapshot)
            payload["@odata.deltaLink"] = f"{base}{table.entity_set}?{urlencode(link, safe='$,!:/ ')}".replace(
                " ", "%20")
        return self._json(200, payload, {"Preference-Applied": "odata.track-changes"})

    # -- writes -------------------------------------------------------------------------------------------------

    def _entity_id(self, base: str, table: Table, row_id: str) -> str:
        return f"{base}{table.entity_set}({row_id})"

    def _written(self, status_created: int, table: Table, written: Any, params: dict[str, str],
                 prefer: dict[str, str], prefer_raw: str | None, base: str, status_updated: int = 200) -> InnerResponse:
        extra = {"OData-EntityId": self._entity_id(base, table, written.row_id), "ETag": etag(written.version)}
        if prefer.get("return") == "representation":
            select = parse_select(params.get("$select"), table)
            payload = {"@odata.context": self._context_url(base, table, select, entity=True),
                       **self._row_json(table, written.version, written.row, select, prefer_raw)}
            extra["Preference-Applied"] = "return=representation"
            return self._json(status_created if written.created else status_updated, payload, extra)
        return InnerResponse(204, {"OData-Version": "4.0", **extra}, b"")

    async def _create(self, table: Table, req: InnerRequest, params: dict[str, str], prefer: dict[str, str],
                      prefer_raw: str | None, ctx: OperationContext, base: str) -> InnerResponse:
        async with self.db.unit():
            values = self.records.parse_body(table, loads(req.body or b"{}"))
            written = await self.records.create(table, values, ctx)
        return self._written(201, table, written, params, prefer, prefer_raw, base)

    async def _patch(self, table: Table, match: KeyMatch, req: InnerRequest, params: dict[str, str],
                     headers: dict[str, str], prefer: dict[str, str], prefer_raw: str | None,
                     ctx: OperationContext, base: str) -> InnerResponse:
        async with self.db.unit():
            values = self.records.parse_body(table, loads(req.body or b"{}"))
            written = await self.records.upsert(
                table, match, values, ctx, if_match=headers.get("if-match"), if_none_match=headers.get("if-none-match")
                if headers.get("if-none-match") != "null" else None,
            )
        return self._written(201, table, written, params, prefer, prefer_raw, base)

    async def _multiple(self, table: Table, action: str, req: InnerRequest, ctx: OperationContext,
                        base: str) -> InnerResponse:
        body = loads(req.body or b"{}")
        targets = body.get("Targets") if isinstance(body, dict) else None
        if not isinstance(targets, list) or not targets:
            raise bad_request(f"{action} needs a non-empty 'Targets' array.")
        ids: list[str] = []
        async with self.db.unit():  # all or nothing, like the real message
            for index, target in enumerate(targets):
                if not isinstance(target, dict):
                    raise bad_request(f"Targets[{index}] must be an object.")
                try:
                    ids.append(await self._one_of_multiple(table, action, target, ctx))
                except DataverseError as exc:
                    exc.message = f"Targets[{index}]: {exc.message}"
                    raise
        return self._json(200, {"@odata.context": f"{base}$metadata#Microsoft.Dynamics.CRM.{action}Response",
                                "Ids": ids})

    async def _one_of_multiple(self, table: Table, action: str, target: dict[str, Any], ctx: OperationContext) -> str:
        odata_type = target.get("@odata.type")
        if odata_type and odata_type.removeprefix("#") != f"Microsoft.Dynamics.CRM.{table.logical_name}":
            raise bad_request(f"@odata.type '{odata_type}' does not match the entity set '{table.entity_set}'.")
        values = self.records.parse_body(table, target)
        if action == "CreateMultiple":
            return (await self.records.create(table, values, ctx)).row_id
        match = self._match_in_body(table, target, values)
        if action == "UpdateMultiple":
            if match is None or match.row_id is None:
                raise bad_request(f"UpdateMultiple needs '{table.primary_id}' or an alternate key of an existing row.")
            rest = {k: v for k, v in values.items() if k not in match.values}
            return (await self.records.update(table, match.row_id, rest, ctx)).row_id
        if match is None:
            return (await self.records.create(table, values, ctx)).row_id
        return (await self.records.upsert(table, match, values, ctx)).row_id

    def _match_in_body(self, table: Table, target: dict[str, Any], values: dict[str, Any]) -> KeyMatch | None:
        """The row an UpsertMultiple target names: `@odata.id`, the primary id, or a full alternate key."""
        if isinstance(target.get("@odata.id"), str):
            ref = target["@odata.id"].split(API_PREFIX, 1)[-1].lstrip("/")
            parsed = split_path(ref)
            if parsed.key is None or parsed.entity_set != table.entity_set:
                raise bad_request(f"@odata.id '{target['@odata.id']}' does not name a {table.logical_name} row.")
            return self.records.locate(table, parsed.key)
        if values.get(table.primary_id):
            return self.records.locate(table, {None: values[table.primary_id]})
        for key in table.keys:
            if all(values.get(c) is not None for c in key.columns):
                key_values = {
                    c: (values[c].id if hasattr(values[c], "id") else values[c]) for c in key.columns
                }
                return self.records.locate(table, key_values, in_url=False)  # type: ignore[arg-type]
        return None
