"""Direct database writes (not part of Dataverse): `/_sim/load`, `/_sim/update`, `/_sim/delete`, for test data,
a 100,000-row bench and drift tests (a "direct SQL fix" nobody was told about).

They go through the same parsing, checks and storage as Web API writes (records.py), made by the SYSTEM user,
but with an event pipeline that runs no step: no webhook is sent, none queued, no System Job written and no
stats counted. Rows still get a new RowVersion (`versionnumber`), `modifiedon` and a change-tracking entry,
as any change of the row in the database would.

A load upserts each row (by its primary id, else by a complete alternate key in the row, else as a new row)
and stores them all in one transaction with executemany. One bad row refuses the whole load: the 400 names
its index and column, and nothing is stored.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.dataverse.auth import Caller
from devstack.dataverse.errors import DUPLICATE_RECORD, DataverseError, bad_request
from devstack.dataverse.records import Event, OperationContext, Pipeline, Records
from devstack.dataverse.resources import key_text, key_texts
from devstack.dataverse.schema import Table
from devstack.dataverse.seed import SYSTEM_USER_ID
from devstack.dataverse.wire import dumps, loads

SYSTEM = Caller(SYSTEM_USER_ID, None, "SYSTEM")


class RowError(Exception):
    """A refused row (0-based index in the list sent): what the Web API would have answered for it."""

    def __init__(self, index: int, error: DataverseError) -> None:
        super().__init__(f"rows[{index}]" + (f" column '{error.column}'" if error.column else "") +
                         f": {error.message}")
        self.index = index
        self.column = error.column
        self.code = error.code


class Silent:
    """The event pipeline without its events: rows are still checked; no step runs or is queued."""

    def __init__(self, inner: Pipeline) -> None:
        self.inner = inner

    def validate(self, table: Table, row: dict[str, Any]) -> None:
        self.inner.validate(table, row)

    async def run_sync(self, stage: int, event: Event) -> None:
        return None

    def queue_async(self, event: Event) -> None:
        return None


@dataclass
class Loaded:
    created: int = 0
    updated: int = 0


class Direct:
    def __init__(self, records: Records) -> None:
        self.records = Records(records.db, records.schema, Silent(records.pipeline))
        self.db = records.db
        self.ctx = OperationContext(caller=SYSTEM)

    async def load(self, table: Table, rows: list[Any]) -> Loaded:
        # The companies, currencies and groups rows bind to repeat from row to row: look each up once.
        resolve = functools.cache(self.records.resolve_reference)
        async with self.db.unit():
            keys = self.db.key_index(table.logical_name)
            # row id -> (row, its alternate-key texts) as this load leaves it, in load order
            done: dict[str, tuple[dict[str, Any], dict[str, str | None]]] = {}
            result = Loaded()
            for index, body in enumerate(rows):
                try:
                    row, texts, created = self._prepare(table, body, resolve, keys, done)
                except DataverseError as error:
                    raise RowError(index, error) from None
                done[row[table.primary_id]] = row, texts
                result.created += created
                result.updated += not created
            self.db.put_many(table.logical_name, [
                (row_id, table.encode(row), texts, self.db.get(table.logical_name, row_id) is None)
                for row_id, (row, texts) in done.items()])
        return result

    def _prepare(self, table: Table, body: Any, resolve: Any, keys: dict[tuple[str, str], str],
                 done: dict[str, tuple[dict[str, Any], dict[str, str | None]]],
                 ) -> tuple[dict[str, Any], dict[str, str | None], bool]:
        """One row as a create or an update makes it, its alternate-key texts (claimed in `keys`), and
        whether it is new."""
        values = self.records.parse_body(table, body, resolve)
        row_id: str | None = values.get(table.primary_id)
        key_columns: tuple[str, ...] = ()
        if not row_id:
            row_id, key_columns = _by_alternate_key(table, values, keys)
        existing, old_texts = done.get(row_id or "", (None, None))
        if existing is None and row_id:
            found = self.records.get(table, row_id)
            existing = found[1] if found else None
        if existing is None:
            row = self.records.new_row(table, values, self.ctx, row_id)
        else:
            # A later row of the same load updates what an earlier one made, as two requests would. The key
            # columns a row was found by are not changed by it (an upsert by alternate key strips them too).
            changes = {k: v for k, v in values.items() if k != table.primary_id and k not in key_columns}
            row = self.records.updated_row(table, existing, changes, self.ctx)
        if existing is not None and old_texts is None:
            old_texts = key_texts(table, existing)
        texts = key_texts(table, row)
        _claim_keys(table, row[table.primary_id], texts, old_texts or {}, keys)
        return row, texts, existing is None

    async def update(self, table: Table, row_id: Any, values: Any) -> int:
        """Update one row (its new versionnumber); `row_id` as the request gave it."""
        async with self.db.unit():
            written = await self.records.update(table, _guid(row_id), self.records.parse_body(table, values), self.ctx)
        return written.version

    async def delete(self, table: Table, ids: list[Any]) -> int:
        """Delete the rows that exist (with the platform's cascade and lookup clean-up); how many there were."""
        deleted = 0
        async with self.db.unit():
            for index, raw in enumerate(ids):
                try:
                    row_id = _guid(raw)
                except DataverseError as error:
                    raise RowError(index, error) from None
                if self.db.get(table.logical_name, row_id) is not None:
                    await self.records.delete(table, row_id, self.ctx)
                    deleted += 1
        return deleted


def _claim_keys(table: Table, row_id: str, texts: dict[str, str | None], old_texts: dict[str, str | None],
                keys: dict[tuple[str, str], str]) -> None:
    """Move the row's alternate-key values in the index from its old values to its new; refuse a value another
    row holds (duplicate key, 412 on the Web API)."""
    for name, text in old_texts.items():
        if text is not None:
            keys.pop((name, text), None)
    for key in table.keys:
        text = texts[key.name]
        owner = keys.setdefault((key.name, text), row_id) if text is not None else row_id
        if owner != row_id:
            error = DataverseError(412, DUPLICATE_RECORD, f"A record that has the attribute values of the entity key "
                                   f"{key.name} ({', '.join(key.columns)}) already exists (id {owner}).")
            error.column = key.columns[0]
            raise error


def _by_alternate_key(table: Table, values: dict[str, Any],
                      keys: dict[tuple[str, str], str]) -> tuple[str | None, tuple[str, ...]]:
    """The row the first complete alternate key in the row names (None: no such row yet), and that key's
    columns."""
    for key in table.keys:
        text = key_text(table, key, values)
        if text is not None:
            return keys.get((key.name, text)), key.columns
    return None, ()


def _guid(raw: Any) -> str:
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        raise bad_request(f"'{raw}' is not a guid.") from None


# -- the routes -------------------------------------------------------------------------------------------------


def routes(records: Records) -> list[Route]:
    direct = Direct(records)

    async def load(request: Request) -> Response:
        body, table = await _request(request, records)
        rows = body.get("rows")
        if not isinstance(rows, list):
            raise bad_request("'rows' must be a list of Web API create bodies.")
        loaded = await direct.load(table, rows)
        return _json({"loaded": len(rows), "created": loaded.created, "updated": loaded.updated})

    async def update(request: Request) -> Response:
        body, table = await _request(request, records)
        if not isinstance(body.get("set"), dict):
            raise bad_request("'set' must be an object of column values (a Web API update body).")
        return _json({"updated": 1, "versionnumber": await direct.update(table, body.get("id"), body["set"])})

    async def delete(request: Request) -> Response:
        body, table = await _request(request, records)
        if not isinstance(body.get("ids"), list):
            raise bad_request("'ids' must be a list of row ids.")
        return _json({"deleted": await direct.delete(table, body["ids"])})

    return [Route("/_sim/load", _answering(load), methods=["POST"]),
            Route("/_sim/update", _answering(update), methods=["POST"]),
            Route("/_sim/delete", _answering(delete), methods=["POST"])]


async def _request(request: Request, records: Records) -> tuple[dict[str, Any], Table]:
    try:
        body = loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body, records.schema.table_for_set(str(body.get("entitySet") or ""))


def _answering(handler: Any) -> Any:
    """The handler with its refusals as problem+json: a bad row names its index and column."""
    async def run(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except RowError as error:
            return _problem(400, str(error), row=error.index, column=error.column, code=error.code)
        except DataverseError as error:
            return _problem(error.status, error.message, column=error.column)
    return run


def _problem(status: int, detail: str, **extra: Any) -> Response:
    title = {404: "Not found", 412: "Conflict"}.get(status, "Bad request")
    problem = {"title": title, "status": status, "detail": detail, **extra}
    return Response(dumps(problem).encode(), status_code=status, media_type="application/problem+json")


def _json(payload: dict[str, Any]) -> Response:
    return Response(dumps(payload).encode(), media_type="application/json")
