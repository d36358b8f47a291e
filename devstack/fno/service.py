"""Data-entity operations: key addressing, create/update/replace/delete, queries, bulk updates.

Every committed change is handed to `on_commit` as a `Change` after the outermost transaction
commits, so events never describe work that was rolled back (F&O ties sending to the X++ commit).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from devstack.fno.auth import Caller
from devstack.fno.errors import ODataError, not_found, write_failed
from devstack.fno.query import Predicate, compile_filter, key_filter, parse_select, sort_rows
from devstack.fno.schema import SYSTEM_FIELDS, Entity, Schema, parse_date, parse_datetime
from devstack.fno.storage import Storage, StoredRow
from devstack.querycache import QueryCache

Row = dict[str, Any]
Operation = Literal["Create", "Update", "Delete"]
# Whether a record is there: (collection, keyid) -> bool. Relation checks take one, so a bulk load can memoize it.
Exists = Callable[[str, str], bool]
MAX_PAGE = 10_000
# F&O keeps a postal address's location (LogisticsLocation) apart from the party's use of it: the first party postal
# address of a location id makes the location, and the address's description is the location's.
PARTY_ADDRESSES, ADDRESS_LOCATIONS = "PartyLocationPostalAddressesV2", "CDSPostalAddressLocations"
_KEY_SEP = "\x1f"
_DATE_TIME_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})")


@dataclass
class Change:
    entity: Entity
    operation: Operation
    company: str  # dataAreaId, "" for global entities
    recid: int
    before: Row | None
    after: Row | None
    caller: Caller
    at: datetime
    changed: list[str]  # fields whose value changed (all fields on Create/Delete)


@dataclass
class Page:
    rows: list[Row]
    count: int | None  # total after $filter, when $count=true
    next_skip: int | None
    top_left: int | None


class Service:
    def __init__(
        self,
        schema: Schema,
        storage: Storage,
        default_company: str,
        on_commit: Callable[[list[Change]], None] | None = None,
        max_page: int = MAX_PAGE,
    ) -> None:
        self.schema = schema
        self.storage = storage
        self.default_company = default_company.lower()
        self.on_commit = on_commit
        self.max_page = max_page
        self._pending: list[list[Change]] = []
        self._selections: QueryCache[list[str]] = QueryCache()

    # ---- unit of work --------------------------------------------------------------------------
    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        """A transaction; its changes are published after the outermost one commits."""
        self._pending.append([])
        try:
            with self.storage.transaction():
                yield
        except BaseException:
            self._pending.pop()
            raise
        done = self._pending.pop()
        if self._pending:
            self._pending[-1].extend(done)
        elif done and self.on_commit:
            self.on_commit(done)

    def _record(self, change: Change) -> None:
        if self._pending:
            self._pending[-1].append(change)
        elif self.on_commit:
            self.on_commit([change])

    # ---- entity sets and keys ---------------------------------------------------------------------
    def entity(self, collection: str) -> Entity:
        ent = self.schema.entity(collection)
        if ent is None:
            raise not_found(collection)
        return ent

    def parse_key(self, entity: Entity, text: str) -> dict[str, Any]:
        """`dataAreaId='usmf',CustomerAccount='US-001'` (or a single positional value), already URL-decoded,
        as typed values."""
        parts = _split_key(text)
        values: dict[str, Any] = {}
        if len(parts) == 1 and "=" not in _outside_quotes(parts[0]) and len(entity.keys) == 1:
            values[entity.keys[0]] = self._key_literal(entity, entity.keys[0], parts[0])
        else:
            for part in parts:
                name, sep, lit = part.partition("=")
                name = name.strip()
                if not sep or name not in entity.fields:
                    raise ODataError(
                        400,
                        f"The key segment '{part}' does not name a key property of "
                        f"'{self.schema.namespace}.{entity.name}'.",
                    )
                values[name] = self._key_literal(entity, name, lit.strip())
        if set(values) != set(entity.keys):
            raise ODataError(
                400,
                "The number of keys specified in the URI does not match number of key properties for the "
                f"resource '{self.schema.namespace}.{entity.name}'. Expected: {', '.join(entity.keys)}.",
            )
        return values

    def _key_literal(self, entity: Entity, name: str, text: str) -> Any:
        fld = entity.fields[name]
        if fld.type == "string":
            if len(text) < 2 or text[0] != "'" or text[-1] != "'":
                raise ODataError(400, f"The key value {text} for '{name}' must be a quoted string literal.")
            return text[1:-1].replace("''", "'")
        if fld.type == "int":
            try:
                return int(text)
            except ValueError:
                raise ODataError(400, f"The key value {text} for '{name}' is not an Edm.Int32.") from None
        if fld.type in ("date", "utcdatetime"):
            # F&O types dates and datetimes as Edm.DateTimeOffset: the key literal is bare, `2026-01-01T12:00:00Z`
            # (OData ABNF dateTimeOffsetValue); a quoted string or a bare date is not that type.
            if not _DATE_TIME_OFFSET.fullmatch(text):
                raise ODataError(
                    400,
                    f"The key value {text} for '{name}' is not a valid Edm.DateTimeOffset literal; "
                    "write it bare, e.g. 2026-01-01T12:00:00Z.",
                )
            return parse_date(text, name) if fld.type == "date" else parse_datetime(text, name)
        return self.schema.parse_input(entity, fld, text.strip("'"))

    @staticmethod
    def keyid(entity: Entity, values: dict[str, Any]) -> str:
        # F&O keys compare case-insensitively (SQL Server collation).
        return _KEY_SEP.join(str(values[k]).lower() for k in entity.keys)

    def company_of(self, entity: Entity, values: dict[str, Any]) -> str:
        return str(values["dataAreaId"]).lower() if entity.company_specific else ""

    def _check_company_scope(self, entity: Entity, company: str, cross_company: bool, segment: str) -> None:
        # Key access to another company than the caller's default needs cross-company=true.
        if entity.company_specific and not cross_company and company != self.default_company:
            raise not_found(segment)

    # ---- rows --------------------------------------------------------------------------------------
    def decode(self, entity: Entity, stored: StoredRow) -> Row:
        data = stored.data
        row: Row = {**self.schema.empty_row(entity),
                    **{n: raw for n, raw in data.items() if raw is not None and n in entity.fields}}
        for fld in entity.text_fields:
            if data.get(fld.name) is not None:
                row[fld.name] = self.schema.from_store(fld, row[fld.name])
        row["@recid"] = stored.recid
        row["@version"] = stored.version
        return row

    def encode(self, entity: Entity, row: Row) -> dict[str, Any]:
        data = {n: row[n] for n in entity.fields}
        for fld in entity.text_fields:
            data[fld.name] = self.schema.to_store(fld, data[fld.name])
        return data

    def wire(self, entity: Entity, row: Row, select: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": etag(row)}
        for name, fld in entity.fields.items():
            if not select or name in select:
                out[name] = self.schema.to_wire(fld, row[name])
        return out

    def _load(self, entity: Entity, values: dict[str, Any], segment: str) -> Row:
        stored = self.storage.get(entity.collection, self.keyid(entity, values))
        if stored is None:
            raise not_found(segment)
        return self.decode(entity, stored)

    # ---- reads -------------------------------------------------------------------------------------
    def get(self, entity: Entity, key_text: str, cross_company: bool) -> Row:
        values = self.parse_key(entity, key_text)
        self._check_company_scope(entity, self.company_of(entity, values), cross_company, entity.collection)
        return self._load(entity, values, entity.collection)

    def query(
        self,
        entity: Entity,
        *,
        filter_text: str | None,
        orderby: str | None,
        top: int | None,
        skip: int,
        count: bool,
        cross_company: bool,
        page_size: int | None,
    ) -> Page:
        company = None if cross_company or not entity.company_specific else self.default_company
        predicate, keys = key_filter(filter_text, entity, self.schema) if filter_text else (None, None)
        if predicate is not None and keys is not None:
            # Records read by key: cheap to answer again, so not kept (nor evicting a scan's answer).
            keyids = self._select_by_keys(entity, company, predicate, [self.keyid(entity, k) for k in keys], orderby)
        else:
            keyids = self._selections.get(
                (entity.collection, company, filter_text, orderby), self.storage.stamps[entity.collection],
                lambda: self._select(entity, company, filter_text, orderby))
        total = len(keyids) if count else None
        keyids = keyids[skip:]
        if top is not None:
            keyids = keyids[:top]
        size = min(page_size or self.max_page, self.max_page)
        stored = self.storage.get_many(entity.collection, keyids[:size])
        rows = [self.decode(entity, stored[k]) for k in keyids[:size]]
        if len(keyids) > size:
            return Page(rows, total, skip + size, None if top is None else top - size)
        return Page(rows, total, None, None)

    def _select(self, entity: Entity, company: str | None, filter_text: str | None, orderby: str | None) -> list[str]:
        """The keys of the records a query answers, in its order (kept by the query cache between pages)."""
        predicate = compile_filter(filter_text, entity, self.schema) if filter_text else None
        rows = [self.decode(entity, s) for s in self.storage.scan(entity.collection, company)]
        if predicate:
            rows = [r for r in rows if predicate(r)]
        if orderby:
            rows = sort_rows(rows, orderby, entity, self.schema)
        return [self.keyid(entity, r) for r in rows]

    def _select_by_keys(self, entity: Entity, company: str | None, predicate: Predicate, keyids: list[str],
                        orderby: str | None) -> list[str]:
        """What `_select` answers when the filter pins keys (query.key_filter): the records of those keys that
        exist, of the company in scope, in key order as the scan reads them, then filtered and sorted the same."""
        stored = self.storage.get_many(entity.collection, sorted(set(keyids)))
        rows = [self.decode(entity, stored[k]) for k in sorted(stored)
                if company is None or stored[k].company == company]
        rows = [r for r in rows if predicate(r)]
        if orderby:
            rows = sort_rows(rows, orderby, entity, self.schema)
        return [self.keyid(entity, r) for r in rows]

    def select(self, entity: Entity, text: str | None) -> list[str] | None:
        return parse_select(text, entity, self.schema) if text else None

    # ---- writes --------------------------------------------------------------------------------------
    def create(self, entity: Entity, body: dict[str, Any], caller: Caller) -> Row:
        row = self.new_row(entity, self.parse_new(entity, body), caller)
        keyid = self.keyid(entity, row)
        now = row["ModifiedDateTime"]
        with self.unit():
            if self.storage.get(entity.collection, keyid) is not None:
                key_desc = ", ".join(f"{entity.fields[k].label}: {row[k]}" for k in entity.keys)
                raise write_failed(
                    entity.table,
                    f"Cannot create a record in {entity.label} ({entity.table}). {key_desc}. "
                    "The record already exists.",
                )
            company = self.company_of(entity, row)
            stored = self.storage.insert(entity.collection, keyid, company, self.encode(entity, row))
            row["@recid"], row["@version"] = stored.recid, stored.version
            self._record(Change(entity, "Create", self.company_of(entity, row), stored.recid, None, row, caller, now,
                                [n for n in entity.fields if n not in SYSTEM_FIELDS]))
            self._keep_location(entity, row, caller)
        return row

    def _keep_location(self, entity: Entity, address: Row, caller: Caller) -> None:
        """The location of a party postal address exists, with the address's description (see ADDRESS_LOCATIONS)."""
        locations = self.schema.entity(ADDRESS_LOCATIONS)
        if entity.collection != PARTY_ADDRESSES or locations is None:
            return
        location, description = address["LocationId"], address.get("Description") or ""
        stored = self.storage.get(locations.collection, self.keyid(locations, {"LocationId": location}))
        if stored is None:
            self.create(locations, {"LocationId": location, "Description": description}, caller)
        elif (self.decode(locations, stored).get("Description") or "") != description:
            quoted = location.replace("'", "''")
            self.update(locations, f"LocationId='{quoted}'", {"Description": description}, caller, cross_company=True)

    def update(
        self,
        entity: Entity,
        key_text: str,
        body: dict[str, Any],
        caller: Caller,
        *,
        cross_company: bool,
        if_match: str | None = None,
        replace: bool = False,
    ) -> Row:
        keys = self.parse_key(entity, key_text)
        self._check_company_scope(entity, self.company_of(entity, keys), cross_company, entity.collection)
        values = self.parse_body(entity, body, allow_keys=True)
        for k in entity.keys:
            if k in values and str(values[k]).lower() != str(keys[k]).lower():
                raise write_failed(
                    entity.table, f"The key field '{k}' cannot be changed (from '{keys[k]}' to '{values[k]}')."
                )
            values.pop(k, None)
        with self.unit():
            before = self._load(entity, keys, entity.collection)
            _check_etag(before, if_match)
            if replace:  # PUT: fields not sent go back to their empty value
                empty = {name: value for name, value in self.schema.empty_row(entity).items()
                         if name not in entity.keys and name not in SYSTEM_FIELDS}
                values = {**empty, **values}
            after, changed = self.revised(entity, before, values, caller)
            if not changed:
                return before
            now = after["ModifiedDateTime"]
            keyid = self.keyid(entity, keys)
            after["@version"] = self.storage.update(entity.collection, keyid, self.encode(entity, after))
            self._record(Change(entity, "Update", self.company_of(entity, keys), before["@recid"], before, after,
                                caller, now, changed))
            if "Description" in changed:
                self._keep_location(entity, after, caller)
        return after

    def delete(self, entity: Entity, key_text: str, caller: Caller, *, cross_company: bool,
               if_match: str | None = None) -> None:
        keys = self.parse_key(entity, key_text)
        self._check_company_scope(entity, self.company_of(entity, keys), cross_company, entity.collection)
        with self.unit():
            before = self._load(entity, keys, entity.collection)
            _check_etag(before, if_match)
            self._check_not_referenced(entity, before)
            self.storage.delete(entity.collection, self.keyid(entity, keys))
            self._record(Change(entity, "Delete", self.company_of(entity, keys), before["@recid"], before, None,
                                caller, _now(), [n for n in entity.fields if n not in SYSTEM_FIELDS]))

    def bulk_update(
        self,
        entity: Entity,
        *,
        filter_text: str | None,
        company: str | None,
        values_in: dict[str, Any],
        caller: Caller,
        raise_events: bool,
    ) -> int:
        """Set-based update (X++ update_recordset): no events unless asked, as in F&O."""
        values = self.parse_body(entity, values_in, allow_keys=False)
        predicate = compile_filter(filter_text, entity, self.schema) if filter_text else None
        scope = company.lower() if company and entity.company_specific else None
        touched = 0
        with self.unit():
            for stored in list(self.storage.scan(entity.collection, scope)):
                before = self.decode(entity, stored)
                if predicate and not predicate(before):
                    continue
                after, changed = self.revised(entity, before, values, caller)
                if not changed:
                    continue
                now = after["ModifiedDateTime"]
                after["@version"] = self.storage.update(
                    entity.collection, self.keyid(entity, after), self.encode(entity, after)
                )
                touched += 1
                if raise_events:
                    self._record(Change(entity, "Update", self.company_of(entity, after), stored.recid, before,
                                        after, caller, now, changed))
        return touched

    # ---- rows as writes make them (shared with the admin load, devstack/fno/load.py) -------------
    def parse_new(self, entity: Entity, body: Any) -> Row:
        """A POST body's values; a company-specific record without dataAreaId is the default company's."""
        values = self.parse_body(entity, body, allow_keys=True)
        if entity.company_specific:
            values["dataAreaId"] = str(values.get("dataAreaId") or self.default_company).lower()
        return values

    def new_row(self, entity: Entity, values: Row, caller: Caller, exists: Exists | None = None) -> Row:
        """The record a create makes of `values` (from parse_new): defaults, validation, stamp. Not stored."""
        if entity.company_specific:
            self.check_company_exists(entity, values["dataAreaId"], exists)
        row: Row = {**self.schema.empty_row(entity), **values}
        self.validate_write(entity, row, exists)
        row["ModifiedBy"] = caller.id
        row["ModifiedDateTime"] = _now()
        return row

    def revised(self, entity: Entity, before: Row, values: Row, caller: Caller,
                exists: Exists | None = None) -> tuple[Row, list[str]]:
        """`before` with `values` applied and validated, and the fields that changed; stamped only when
        one did (F&O writes nothing for an update that changes no value)."""
        after = {**before, **values}
        self.validate_write(entity, after, exists)
        changed = [n for n in entity.fields if n not in SYSTEM_FIELDS and after[n] != before[n]]
        if changed:
            after["ModifiedBy"] = caller.id
            after["ModifiedDateTime"] = _now()
        return after, changed

    def exists(self, collection: str, keyid: str) -> bool:
        return self.storage.get(collection, keyid) is not None

    # ---- validation ------------------------------------------------------------------------------
    def parse_body(self, entity: Entity, body: Any, *, allow_keys: bool) -> Row:
        if not isinstance(body, dict):
            raise ODataError(400, "The request body must be a JSON object describing the entity.")
        values: Row = {}
        for name, value in body.items():
            if name.startswith("@") or "@odata." in name:
                continue  # annotations such as @odata.etag travel back from reads
            fld = entity.fields.get(name)
            if fld is None:
                raise ODataError(
                    400,
                    f"The property '{name}' does not exist on type '{self.schema.namespace}.{entity.name}'. "
                    "Make sure to only use property names that are defined by the type.",
                    field=name,
                )
            if fld.read_only:
                continue
            if not allow_keys and name in entity.keys:
                raise ODataError(400, f"The key field '{name}' cannot be set by a bulk update.", field=name)
            try:
                values[name] = self.schema.parse_input(entity, fld, value)
            except ODataError as err:
                err.field = name
                raise
        return values

    def validate_write(self, entity: Entity, row: Row, exists: Exists | None = None) -> None:
        """validateWrite: mandatory fields and table relations (`exists` answers whether a related record
        is there; the admin load passes a memo of it)."""
        exists = exists or self.exists
        empty = self.schema.empty_row(entity)
        problems: list[tuple[str, str]] = []  # (field, infolog line)
        for fld in entity.mandatory:
            if row[fld.name] == empty[fld.name]:
                problems.append((fld.name, f"Field '{fld.label}' ({fld.name}) must be filled in."))
        for fld in entity.related:
            name = fld.name
            if fld.relation and row[name] != "" and not problems:
                target_name, target_field = fld.relation.split(".")
                target = self.schema.entities[target_name]
                key = {target_field: row[name]}
                if target.company_specific:
                    key["dataAreaId"] = row.get("dataAreaId", self.default_company)
                if set(key) != set(target.keys) or not exists(target_name, self.keyid(target, key)):
                    problems.append((name, f"The value '{row[name]}' in field '{fld.label}' ({name}) is not "
                                           f"found in the relating table '{target.label}'."))
        if problems:
            raise write_failed(entity.table, " ".join(f"Warning: {p}" for _, p in problems)
                               + " Error: Validation failed.", field=problems[0][0])

    def check_company_exists(self, entity: Entity, company: str, exists: Exists | None = None) -> None:
        legal = self.schema.entities.get("LegalEntities")
        if legal and not (exists or self.exists)("LegalEntities", company):
            raise write_failed(entity.table, f"Company '{company}' does not exist.", field="dataAreaId")

    def _check_not_referenced(self, entity: Entity, row: Row) -> None:
        """validateDelete: a group, currency or payment term still in use cannot be deleted."""
        for other in self.schema.entities.values():
            for fld in other.fields.values():
                if not fld.relation:
                    continue
                target_name, target_field = fld.relation.split(".")
                if target_name != entity.collection:
                    continue
                company = row.get("dataAreaId") if entity.company_specific else None
                value = str(row[target_field]).lower()
                for stored in self.storage.scan(other.collection, company):
                    if str(stored.data.get(fld.name, "")).lower() == value:
                        raise write_failed(
                            entity.table,
                            f"The record cannot be deleted while dependent records exist in {other.label} "
                            f"({fld.name} = '{row[target_field]}').",
                        )


def etag(row: Row) -> str:
    token = base64.b64encode(f"1,{row['@recid']};{row['@version']}".encode()).decode()
    return f'W/"{token}"'


def _check_etag(row: Row, if_match: str | None) -> None:
    if if_match and if_match.strip() != "*" and if_match.strip() != etag(row):
        raise ODataError(412, "The record has been changed by another user since it was read (ETag mismatch).")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _split_key(text: str) -> list[str]:
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()] or [""]


def _outside_quotes(text: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "", text)
