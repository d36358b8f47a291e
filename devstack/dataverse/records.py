"""Write semantics of the Web API (reference §2.2-2.4): create, update, upsert, delete, etags and
conditional headers, `@odata.bind` to ids, alternate keys and `$<Content-ID>`, system columns, and
the event pipeline (webhook steps) around each write."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from devstack.dataverse import gab
from devstack.dataverse.auth import BUSINESS_UNIT_ID, Caller
from devstack.dataverse.errors import (
    DUPLICATE_RECORD,
    KEY_DOES_NOT_EXIST,
    DataverseError,
    bad_request,
    does_not_exist,
)
from devstack.dataverse.represent import etag
from devstack.dataverse.resources import KeyMatch, key_texts, resolve_key, split_path
from devstack.dataverse.schema import PAYLOAD_ERROR, VALIDATION_ERROR, Ref, Schema, Table, utcnow_text
from devstack.dataverse.store import Database, KeyConflict
from devstack.dataverse.unitgroups import place_unit

API_PREFIX = "/api/data/v9.2/"
Message = Literal["Create", "Update", "Delete", "OnExternalCreated", "OnExternalUpdated", "OnExternalDeleted"]

# How a body's `@odata.bind` value finds its row: reference text -> (table, row id).
Resolve = Callable[[str], tuple[Table, str]]
# `$1` references inside a $batch changeset: Content-ID -> "accounts(<guid>)".
content_ids: ContextVar[dict[str, str] | None] = ContextVar("dataverse_content_ids", default=None)


@dataclass
class OperationContext:
    """What the platform knows about the request that started an operation."""

    caller: Caller
    # The authenticated caller when it impersonates `caller` (CallerObjectId / MSCRMCallerID headers).
    delegate: Caller | None = None
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tag: str | None = None
    bypass_step_ids: frozenset[str] = frozenset()
    bypass_sync: bool = False
    bypass_async: bool = False


@dataclass
class Event:
    """One message on one row, as the event pipeline sees it."""

    message: Message
    table: Table
    row_id: str
    target: dict[str, Any]
    sent: set[str]
    pre: dict[str, Any] | None
    post: dict[str, Any] | None
    pre_version: int | None
    post_version: int | None
    ctx: OperationContext
    operation_created_on: str = field(default_factory=utcnow_text)


class Pipeline(Protocol):
    def validate(self, table: Table, row: dict[str, Any]) -> None: ...

    async def run_sync(self, stage: int, event: Event) -> None: ...

    def queue_async(self, event: Event) -> None: ...


@dataclass
class Written:
    row_id: str
    version: int
    row: dict[str, Any]
    created: bool


class Records:
    def __init__(self, db: Database, schema: Schema, pipeline: Pipeline) -> None:
        self.db = db
        self.schema = schema
        self.pipeline = pipeline

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, table: Table, row_id: str) -> tuple[int, dict[str, Any]] | None:
        found = self.db.get(table.logical_name, row_id)
        return None if found is None else (found[0], table.decode(found[1]))

    def name_of(self, ref: Ref) -> str | None:
        table = self.schema.tables.get(ref.table)
        found = self.db.get(ref.table, ref.id) if table else None
        return None if found is None or table is None else found[1].get(table.primary_name)

    def locate(self, table: Table, key: dict[str | None, Any], *, in_url: bool = True) -> KeyMatch:
        return resolve_key(self.db, table, key, in_url=in_url)

    # -- callers ----------------------------------------------------------------------------------------

    def ensure_user(self, caller: Caller) -> None:
        if self.db.get("systemuser", caller.systemuserid) is not None:
            return
        table = self.schema.table("systemuser")
        now = utcnow_text()
        row: dict[str, Any] = {
            "systemuserid": caller.systemuserid, "fullname": caller.name,
            "azureactivedirectoryobjectid": caller.aad_object_id, "applicationid": caller.application_id,
            "businessunitid": Ref("businessunit", BUSINESS_UNIT_ID), "statecode": 0, "statuscode": 1,
            "createdon": now, "modifiedon": now,
        }
        version = self.db.next_version("systemuser", caller.systemuserid, "upsert")
        row["versionnumber"] = version
        with contextlib.suppress(KeyConflict):
            self.db.put("systemuser", caller.systemuserid, version, table.encode(row), key_texts(table, row), new=True)

    # -- request bodies ---------------------------------------------------------------------------------

    def resolve_reference(self, text: str) -> tuple[Table, str]:
        """`/accounts(<guid>)`, `accounts(accountnumber='A')`, an absolute URL, or `$1` -> (table, id)."""
        if text.startswith("$"):
            refs = content_ids.get() or {}
            if text[1:] not in refs:
                raise bad_request(f"Content-ID reference '{text}' does not match any earlier request in the changeset.")
            text = refs[text[1:]]
        if API_PREFIX in text:
            text = text.split(API_PREFIX, 1)[1]
        path = split_path(text.lstrip("/"))
        table = self.schema.table_for_set(path.entity_set)
        if path.key is None or path.rest:
            raise bad_request(f"'{text}' is not a reference to a single record.")
        match = self.locate(table, path.key)
        if match.row_id is None:
            if match.by_primary:
                raise does_not_exist(table.logical_name, match.values[table.primary_id])
            raise DataverseError(
                404, KEY_DOES_NOT_EXIST,
                f"A record with the specified key values does not exist in {table.logical_name} entity",
            )
        return table, match.row_id

    def parse_body(self, table: Table, body: Any, resolve: Resolve | None = None) -> dict[str, Any]:
        """A request body as column values; `resolve` finds `@odata.bind` targets (resolve_reference unless
        given: /_sim/load passes a memo of it). An error names the property in `.column`."""
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.", PAYLOAD_ERROR)
        values: dict[str, Any] = {}
        for name, raw in body.items():
            try:
                self._parse_property(table, name, raw, values, resolve or self.resolve_reference)
            except DataverseError as exc:
                exc.column = exc.column or name
                raise
        return values

    def _parse_property(self, table: Table, name: str, raw: Any, values: dict[str, Any], resolve: Resolve) -> None:
        if name.endswith("@odata.bind"):
            nav = name[: -len("@odata.bind")]
            if nav not in table.navigation:
                raise DataverseError(
                    400, PAYLOAD_ERROR,
                    f"An undeclared property '{nav}' which only has property annotations in the payload but no "
                    "property value was found in the payload. In OData, only declared navigation properties and "
                    "declared named streams can be represented as properties without values.",
                )
            lookup, target = table.navigation[nav]
            if raw is None:
                values[lookup.name] = None
                return
            if not isinstance(raw, str):
                raise bad_request(f"The value of '{name}' must be a URL of a record.", PAYLOAD_ERROR)
            bound_table, row_id = resolve(raw)
            if bound_table.logical_name != target:
                raise bad_request(
                    f"'{name}' must reference a '{target}' record, not '{bound_table.logical_name}'.", PAYLOAD_ERROR
                )
            values[lookup.name] = Ref(target, row_id)
            return
        if "@" in name:
            return  # instance annotations such as @odata.type or @odata.etag are not data
        column = table.columns.get(name)
        if column is None or column.is_lookup:
            raise DataverseError(
                400, PAYLOAD_ERROR,
                f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{table.logical_name}'. "
                "Make sure to only use property names that are defined by the type or mark the type as open type.",
            )
        if column.read_only:
            return  # Dataverse ignores values for columns that are not valid for create/update
        values[name] = column.coerce(raw)

    # -- writes -----------------------------------------------------------------------------------------

    def _finish_row(self, table: Table, row: dict[str, Any], ctx: OperationContext, *, created: bool) -> None:
        now = utcnow_text()
        user = Ref("systemuser", ctx.caller.systemuserid)
        delegate = Ref("systemuser", ctx.delegate.systemuserid) if ctx.delegate else None
        if created:
            row["createdon"], row["createdby"], row["createdonbehalfby"] = now, user, delegate
        row["modifiedon"], row["modifiedby"], row["modifiedonbehalfby"] = now, user, delegate
        for column in table.computed:
            parts = [row.get(p) for p in (column.computed or "").split()]
            row[column.name] = " ".join(str(p) for p in parts if p) or None
        if table.logical_name == "serviceendpoint":
            row["isauthvalueset"] = bool(row.get("authvalue"))

    def _check_required(self, table: Table, row: dict[str, Any]) -> None:
        for column in table.system_required:
            if row.get(column.name) in (None, ""):
                error = DataverseError(
                    400, VALIDATION_ERROR,
                    f"A validation error occurred.  The value for the required attribute '{column.name}' of the "
                    f"'{table.logical_name}' entity must be provided.",
                )
                error.column = column.name
                raise error

    # Rows as a create or an update makes them, not yet stored (shared with /_sim/load, direct.py).

    def new_row(self, table: Table, values: dict[str, Any], ctx: OperationContext,
                row_id: str | None = None) -> dict[str, Any]:
        """The row a create makes of `values`: its id, default state, system columns; checked."""
        row = dict(values)
        row[table.primary_id] = values.get(table.primary_id) or row_id or str(uuid.uuid4())
        for name in ("statecode", "statuscode"):
            column = table.columns.get(name)
            if column is not None and row.get(name) is None:
                row[name] = 0 if name == "statecode" else min(column.options or {1: ""})
        self._finish_row(table, row, ctx, created=True)
        place_unit(table, row, lambda name, row_id: (self.get(self.schema.table(name), row_id) or (0, None))[1],
                   lambda name, row_id, made: self._store_made(self.schema.table(name), made, ctx))
        self._check_required(table, row)
        self.pipeline.validate(table, row)
        return row

    def _store_made(self, table: Table, row: dict[str, Any], ctx: OperationContext) -> None:
        """Store a row a plugin makes within a create (a unit group and its base unit), without events."""
        for name in ("statecode", "statuscode"):
            if name in table.columns and row.get(name) is None:
                row[name] = 0 if name == "statecode" else 1
        self._finish_row(table, row, ctx, created=True)
        row_id = row[table.primary_id]
        version = self.db.next_version(table.logical_name, row_id, "upsert")
        row["versionnumber"] = version
        self._store(table, row_id, version, row, new=True)

    def updated_row(self, table: Table, existing: dict[str, Any], values: dict[str, Any],
                    ctx: OperationContext) -> dict[str, Any]:
        """The row an update of `existing` with `values` (primary id left out) makes; checked."""
        row = {**existing, **values}
        self._finish_row(table, row, ctx, created=False)
        self.pipeline.validate(table, row)
        return row

    def _store(self, table: Table, row_id: str, version: int, row: dict[str, Any], *, new: bool) -> None:
        try:
            self.db.put(table.logical_name, row_id, version, table.encode(row), key_texts(table, row), new=new)
        except KeyConflict as conflict:
            if conflict.keyname == "primary":
                raise DataverseError(412, DUPLICATE_RECORD, "Cannot insert duplicate key.") from None
            key = next(k for k in table.keys if k.name == conflict.keyname)
            shown = ", ".join(str(row.get(c).id if isinstance(row.get(c), Ref) else row.get(c)) for c in key.columns)
            raise DataverseError(
                412, DUPLICATE_RECORD,
                f"A record that has the attribute values {shown} already exists. The entity key {key.name} requires "
                "that this set of attributes contains unique values. Select unique values and try again.",
            ) from None

    async def create(
        self, table: Table, values: dict[str, Any], ctx: OperationContext, *, row_id: str | None = None
    ) -> Written:
        sent = set(values)
        row = self.new_row(table, values, ctx, row_id)
        row_id = row[table.primary_id]
        event = Event("Create", table, row_id, dict(row), sent, None, None, None, None, ctx)
        version = await self._commit(table, row_id, row, event, new=True)
        return Written(row_id, version, row, True)

    async def _commit(self, table: Table, row_id: str, row: dict[str, Any], event: Event, *, new: bool) -> int:
        """Pre-validation and pre-operation steps, store, then post-operation steps and the async
        queue, in the platform's pipeline order. Returns the new row version."""
        await self.pipeline.run_sync(10, event)
        await self.pipeline.run_sync(20, event)
        version = self.db.next_version(table.logical_name, row_id, "upsert")
        row["versionnumber"] = version
        self._store(table, row_id, version, row, new=new)
        if table.logical_name == gab.PARTY_ADDRESS:
            self._keep_customer_addresses(row, event.ctx)
        event.post, event.post_version = dict(row), version
        if new:  # a create's Target is the whole stored row
            event.target = dict(row)
        await self.pipeline.run_sync(40, event)
        self.pipeline.queue_async(event)
        return version

    def _keep_customer_addresses(self, address: dict[str, Any], ctx: OperationContext) -> None:
        """The party and global address book solution's plugin (devstack/dataverse/gab.py): the party postal
        address as an Address row of each account and contact of its party, stored without events."""
        target = self.schema.tables.get(gab.CUSTOMER_ADDRESS)
        party = address.get("msdyn_partyid")
        if target is None or not isinstance(party, Ref):
            return

        def rows(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
            table = self.schema.table(name)
            return ((row_id, table.decode(data)) for row_id, _, data in self.db.scan(name))

        for parent in list(gab.parents_of(party, rows)):
            values = gab.customer_address(address, parent)
            keyval = key_texts(target, values).get(gab.LOCATION_KEY)
            existing = self.db.find_by_key(target.logical_name, gab.LOCATION_KEY, keyval) if keyval else None
            found = self.get(target, existing) if existing else None
            if found is None:
                self._store_made(target, {target.primary_id: str(uuid.uuid4()), **values}, ctx)
                continue
            row = {**found[1], **values}
            self._finish_row(target, row, ctx, created=False)
            version = self.db.next_version(target.logical_name, row[target.primary_id], "upsert")
            row["versionnumber"] = version
            self._store(target, row[target.primary_id], version, row, new=False)

    def _check_etag(self, table: Table, row_id: str, version: int, if_match: str | None) -> None:
        if if_match and if_match.strip() != "*" and if_match.strip() != etag(version):
            raise DataverseError(
                412, "", "The version of the existing record doesn't match the RowVersion property provided."
            )

    async def update(
        self, table: Table, row_id: str, values: dict[str, Any], ctx: OperationContext, *, if_match: str | None = None
    ) -> Written:
        found = self.get(table, row_id)
        if found is None:
            raise does_not_exist(table.logical_name, row_id)
        version, existing = found
        self._check_etag(table, row_id, version, if_match)
        values = {k: v for k, v in values.items() if k != table.primary_id}
        row = self.updated_row(table, existing, values, ctx)
        target = {**values, table.primary_id: row_id}
        for name in ("modifiedon", "modifiedby", "modifiedonbehalfby"):
            target[name] = row[name]
        event = Event("Update", table, row_id, target, set(values), existing, None, version, None, ctx)
        new_version = await self._commit(table, row_id, row, event, new=False)
        return Written(row_id, new_version, row, False)

    async def upsert(
        self, table: Table, match: KeyMatch, values: dict[str, Any], ctx: OperationContext,
        *, if_match: str | None = None, if_none_match: str | None = None,
    ) -> Written:
        """PATCH on a key: update if the row exists, else create it (reference §2.4)."""
        if match.row_id is not None:
            if if_none_match and if_none_match.strip() == "*":
                raise DataverseError(412, "", "A record with matching key values already exists.")
            # Key columns in the body are stripped on update.
            values = {k: v for k, v in values.items() if k not in match.values}
            return await self.update(table, match.row_id, values, ctx, if_match=if_match)
        if if_match:
            shown = match.values.get(table.primary_id) or ",".join(
                f"{k}={v.id if isinstance(v, Ref) else v}" for k, v in match.values.items()
            )
            raise DataverseError(404, "", f"{table.logical_name} With Id = {shown} Does Not Exist")
        # On create, body values win over the URL's key values.
        return await self.create(table, {**match.values, **values}, ctx)

    async def delete(self, table: Table, row_id: str, ctx: OperationContext, *, if_match: str | None = None) -> None:
        found = self.get(table, row_id)
        if found is None:
            raise does_not_exist(table.logical_name, row_id)
        version, existing = found
        self._check_etag(table, row_id, version, if_match)
        target = {table.primary_id: row_id}
        event = Event("Delete", table, row_id, target, set(), existing, None, version, None, ctx)
        await self.pipeline.run_sync(10, event)
        await self.pipeline.run_sync(20, event)
        self.db.delete(table.logical_name, row_id)
        await self._unlink(table, row_id, ctx)
        await self.pipeline.run_sync(40, event)
        self.pipeline.queue_async(event)

    async def _unlink(self, deleted: Table, row_id: str, ctx: OperationContext) -> None:
        """Rows that referenced a deleted row: cascade-delete children of parental relationships, clear the
        lookup elsewhere (a new version, so change tracking reports it)."""
        for table in self.schema.tables.values():
            columns = [c for c in table.columns.values()
                       if c.is_lookup and not c.read_only and deleted.logical_name in c.targets]
            if not columns or table.system:
                continue
            for child_id, _, data in list(self.db.scan(table.logical_name)):
                linked = [c for c in columns if (data.get(c.name) or [None, None])[1] == row_id]
                if not linked:
                    continue
                if any(c.on_delete == "Cascade" for c in linked):
                    if self.db.get(table.logical_name, child_id) is not None:
                        await self.delete(table, child_id, ctx)
                    continue
                row = table.decode(data)
                for column in linked:
                    row[column.name] = None
                version = self.db.next_version(table.logical_name, child_id, "upsert")
                row["versionnumber"] = version
                self._store(table, child_id, version, row, new=False)
