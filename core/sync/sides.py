"""The two sides of a map, in map terms, over the connectors.

Apply speaks of records (source field name -> canonical value, lookups as KeyRefs) and keys;
these adapters turn that into Web API / OData calls and back: reading a row with the columns a
map needs, turning Dataverse row ids into integration keys (and back, for `@odata.bind`),
checking that a lookup's parent exists, and writing only what changed.

Ids and keys of reference rows barely ever change, so they are cached per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from core.connectors.dataverse import DataverseClient, key_filter
from core.connectors.errors import ConnectorError, NotFound
from core.connectors.fno import FnoClient
from core.connectors.fno import key_literal as fno_literal
from core.connectors.http import odata_string
from core.events.model import as_lookup_ref, lookup_ref
from core.maps import KeyRef, MapSet, MapValueError, TableMap, record_key
from core.maps.filters import FilterError, filter_fields, render
from core.maps.keys import company_code, typed_key
from core.maps.model import Side
from core.sync.domain import Link
from core.sync.errors import LookupPending, TargetGone


class LinkLookup(Protocol):
    async def get(self, map_name: str, key: tuple[str, ...]) -> Link | None: ...


@dataclass(frozen=True)
class Written:
    """Where a write landed: the Dataverse row id or the F&O key, and whether it created the row."""

    record_id: str | None
    fno_key: dict[str, Any] | None
    created: bool


@dataclass(frozen=True)
class SourceRow:
    """One record read in bulk (a page, or a set of keys): what a write or a comparison needs of it.
    `key` is None, and `problem` says why, when the record has no usable integration key."""

    record: dict[str, Any]
    key: tuple[str, ...] | None
    row_id: str | None = None  # Dataverse row id
    fno_key: dict[str, Any] | None = None
    version: str | None = None
    modified_at: datetime | None = None
    problem: str | None = None


@dataclass(frozen=True)
class SourcePage:
    rows: list[SourceRow]
    next_link: str | None
    filtered: bool  # the map's source filter was applied by the source (else: evaluate it on the rows)


CREATE_CHUNK = 500  # rows per CreateMultiple (Microsoft suggests about 1,000 on standard tables)
# Keys per query when reading records by key: an `or` of key filters, short enough for any URL limit.
KEYS_PER_QUERY = 25


class SidePort(Protocol):
    """What apply asks of either side, in map terms: the same calls whichever way a change travels."""

    side: Side

    async def read_linked(self, table_map: TableMap, link: Link) -> dict[str, Any] | None:
        """The linked record as this side holds it now (None: gone, or not linked on this side)."""
        ...

    async def read_current(self, table_map: TableMap, link: Link) -> SourceRow | None:
        """`read_linked` with the record's last change time on this side (whole seconds on both real services)."""
        ...

    async def write(self, table_map: TableMap, link: Link | None, projected: Mapping[str, Any],
                    changes: Mapping[str, Any], *, recreate: bool = False) -> Written: ...

    async def delete(self, table_map: TableMap, link: Link | None, key: tuple[str, ...]) -> bool:
        """Delete the record (by the link's id or key here, else by its canonical key); whether it was there."""
        ...

    async def create_page(self, table_map: TableMap, rows: Sequence[Mapping[str, Any]]) -> list[Written | Exception]:
        """Create records known to be missing here, in bulk; per row what became of it (one refused row
        fails alone)."""
        ...

    async def read_page(self, table_map: TableMap, *, next_link: str | None, page_size: int) -> SourcePage:
        """A page of the map's records on this side, the map's source filter pushed down where the side
        takes it; `next_link` None is the first page."""
        ...

    async def read_keys(self, table_map: TableMap, keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], SourceRow]:
        """The records of these canonical keys that exist on this side, in bulk."""
        ...


def pushed_filter(table_map: TableMap, side: Side) -> str | None:
    """The map's source filter as `$filter` text for the side, or None (no filter, or one that cannot be
    rendered: then the rows are filtered in Python, as live sync does)."""
    node = table_map.source_filter(side)
    if node is None:
        return None
    try:
        return render(node, side)
    except FilterError:
        return None


def _keyed(table_map: TableMap, side: Side, record: dict[str, Any], **ids: Any) -> SourceRow:
    try:
        return SourceRow(record, record_key(table_map, side, record), **ids)
    except MapValueError as error:
        return SourceRow(record, None, problem=str(error), **ids)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            return None
    return None


def filter_columns(table_map: TableMap, side: Side) -> set[str]:
    node = table_map.source_filter(side)
    return filter_fields(node) if node is not None else set()


class DataverseSide:
    side: Side = "dataverse"

    def __init__(self, client: DataverseClient, maps: MapSet, links: LinkLookup) -> None:
        self.client = client
        self.maps = maps
        self.links = links
        self._keys: dict[tuple[str, str], KeyRef | None] = {}  # (map, row id) -> key reference
        self._ids: dict[tuple[str, tuple[Any, ...]], str] = {}  # (map, key values) -> row id
        self._company_codes: dict[str, str] = {}
        self._company_ids: dict[str, str] = {}
        company_maps = sorted({m.company.map for m in maps.values() if m.company is not None})
        self._legal = maps[company_maps[0]] if company_maps else None

    # -- reading --------------------------------------------------------------------------------
    def columns(self, table_map: TableMap) -> list[str]:
        dv = table_map.dataverse
        names = {dv.primary_id, *(f.dataverse for f in table_map.fields if f.dataverse)}
        names |= {k for k in dv.key if "." not in k}
        names |= set(self._lookup_columns(table_map))
        if table_map.company is not None:
            names.add(f"_{table_map.company.dataverse}_value")
        names |= {n for n in filter_columns(table_map, "dataverse") if "." not in n}
        return sorted(names)

    def _lookup_columns(self, table_map: TableMap) -> dict[str, str]:
        """`_<column>_value` -> navigation property, for each lookup of the map."""
        return {f"_{lk.column(self.maps[lk.map].dataverse.table)}_value": lk.dataverse for lk in table_map.lookups}

    def _record(self, table_map: TableMap, row: Mapping[str, Any]) -> dict[str, Any]:
        """A Web API row as a record: annotations dropped, `_x_value` lookups as references to resolve,
        under their navigation property."""
        navigation = self._lookup_columns(table_map)
        record: dict[str, Any] = {}
        for name, value in row.items():
            if "@" in name:
                continue
            if name.startswith("_") and name.endswith("_value"):
                nav = navigation.get(name, name[1:-len("_value")])
                record[nav] = lookup_ref("", value) if value else None
            else:
                record[name] = value
        return record

    async def read(self, table_map: TableMap, record_id: str) -> dict[str, Any] | None:
        """The row as a record of canonical values (lookups as KeyRefs), or None if it is gone."""
        row = await self.client.get(table_map.dataverse.entity_set, record_id, select=self.columns(table_map))
        if row is None:
            return None
        return await self.resolve(table_map, self._record(table_map, row))

    async def read_page(self, table_map: TableMap, *, next_link: str | None, page_size: int) -> SourcePage:
        dv = table_map.dataverse
        pushed = pushed_filter(table_map, "dataverse")
        select = [*self.columns(table_map), "modifiedon", "versionnumber"]
        try:
            page = await self.client.page(dv.entity_set, filter=pushed, select=select, orderby=dv.primary_id,
                                          page_size=page_size, next_link=next_link)
        except ConnectorError as error:
            if pushed is None or next_link is not None or error.status != 400:
                raise
            pushed = None  # the filter is not one the server takes: read everything, filter in Python
            page = await self.client.page(dv.entity_set, select=select, orderby=dv.primary_id,
                                          page_size=page_size)
        rows = [await self._source_row(table_map, row) for row in page.rows]
        return SourcePage(rows, page.next_link, filtered=pushed is not None)

    async def read_keys(self, table_map: TableMap, keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], SourceRow]:
        dv = table_map.dataverse
        select = [*self.columns(table_map), "modifiedon", "versionnumber"]
        clauses: list[str] = []
        for key in keys:
            try:
                clauses.append(f"({key_filter(await self.alternate_key(table_map, _key_record(table_map, key)))})")
            except LookupPending:
                continue  # its company does not exist here, so neither does the row
        found: dict[tuple[str, ...], SourceRow] = {}
        wanted = set(keys)
        for start in range(0, len(clauses), KEYS_PER_QUERY):
            rows = await self.client.query(dv.entity_set, filter=" or ".join(clauses[start:start + KEYS_PER_QUERY]),
                                           select=select)
            for row in rows:
                source = await self._source_row(table_map, row)
                if source.key is not None and source.key in wanted:
                    found[source.key] = source
        return found

    async def _source_row(self, table_map: TableMap, row: Mapping[str, Any]) -> SourceRow:
        record = await self.resolve(table_map, self._record(table_map, row))
        version = row.get("versionnumber")
        row_id = str(row.get(table_map.dataverse.primary_id) or "").lower() or None
        record.pop("modifiedon", None)
        record.pop("versionnumber", None)
        return _keyed(table_map, "dataverse", record, row_id=row_id,
                      version=str(version) if version is not None else None, modified_at=_when(row.get("modifiedon")))

    async def read_linked(self, table_map: TableMap, link: Link) -> dict[str, Any] | None:
        return await self.read(table_map, link.dataverse_id) if link.dataverse_id else None

    async def read_current(self, table_map: TableMap, link: Link) -> SourceRow | None:
        if not link.dataverse_id:
            return None
        row = await self.client.get(table_map.dataverse.entity_set, link.dataverse_id,
                                    select=[*self.columns(table_map), "modifiedon"])
        if row is None:
            return None
        modified = _when(row.pop("modifiedon", None))
        record = await self.resolve(table_map, self._record(table_map, row))
        return SourceRow(record, link.key, row_id=link.dataverse_id, modified_at=modified)

    async def resolve(self, table_map: TableMap, record: Mapping[str, Any]) -> dict[str, Any]:
        """Lookups given as row ids (webhook EntityReferences, `_x_value` columns) -> KeyRefs."""
        out = dict(record)
        company = table_map.company
        if company is not None and company.dataverse in out:
            ref = as_lookup_ref(out[company.dataverse])
            if ref is not None:
                code = await self.company_code(ref[1])
                out[company.dataverse] = self._company_ref(table_map, code)
        for lookup in table_map.lookups:
            if lookup.dataverse not in out:
                continue
            ref = as_lookup_ref(out[lookup.dataverse])
            if ref is not None:
                out[lookup.dataverse] = await self.key_of(self.maps[lookup.map], ref[1])
        return out

    def _company_ref(self, table_map: TableMap, code: str) -> KeyRef:
        assert table_map.company is not None
        legal = self.maps[table_map.company.map]
        return KeyRef(legal.name, "dataverse", ((legal.dataverse.key[0], code),))

    async def company_code(self, row_id: str) -> str:
        row_id = row_id.lower()
        if row_id not in self._company_codes:
            legal = self._legal_entities()
            column = legal.dataverse.key[0]
            row = await self.client.get(legal.dataverse.entity_set, row_id, select=[column])
            if row is None or not row.get(column):
                raise LookupPending(legal.name, column, f"{legal.dataverse.entity_set}({row_id})")
            self._company_codes[row_id] = str(row[column]).upper()
        return self._company_codes[row_id]

    async def company_id(self, code: str) -> str:
        code = code.upper()
        if code not in self._company_ids:
            legal = self._legal_entities()
            column = legal.dataverse.key[0]
            rows = await self.client.query(legal.dataverse.entity_set, filter=f"{column} eq {odata_string(code)}",
                                           select=[legal.dataverse.primary_id], top=1)
            if not rows:
                raise LookupPending(legal.name, column, f"company {code}")
            self._company_ids[code] = str(rows[0][legal.dataverse.primary_id]).lower()
        return self._company_ids[code]

    def _legal_entities(self) -> TableMap:
        if self._legal is None:
            raise LookupPending("(none)", "company", "a map of legal entities (no map is company-specific)")
        return self._legal

    async def key_of(self, target: TableMap, row_id: str) -> KeyRef | None:
        """The integration key of a Dataverse row of `target` (None: the row does not exist)."""
        cache_key = (target.name, row_id.lower())
        if cache_key not in self._keys:
            select = [k for k in target.dataverse.key if "." not in k]
            if target.company is not None:
                select.append(f"_{target.company.dataverse}_value")
            row = await self.client.get(target.dataverse.entity_set, row_id, select=select)
            if row is None:
                return None
            values: list[tuple[str, Any]] = []
            for part in target.dataverse.key:
                if "." in part:
                    company_row = row.get(f"_{part.split('.')[0]}_value")
                    values.append((part, await self.company_code(company_row) if company_row else None))
                else:
                    values.append((part, row.get(part)))
            self._keys[cache_key] = KeyRef(target.name, "dataverse", tuple(values))
            self._ids[(target.name, tuple(values))] = row_id.lower()
        return self._keys[cache_key]

    # -- writing --------------------------------------------------------------------------------
    async def row_id(self, ref: KeyRef) -> str | None:
        """The row id behind a key reference: from the link of that map, else by alternate key."""
        cache_key = (ref.map, ref.values)
        if cache_key in self._ids:
            return self._ids[cache_key]
        target = self.maps[ref.map]
        if self._legal is not None and target.name == self._legal.name:
            try:
                return await self.company_id(str(ref.values[0][1]))
            except LookupPending:
                return None
        link = await self.links.get(target.name, record_key(target, "dataverse", dict(ref.values)))
        if link is not None and link.dataverse_id and link.state == "linked":
            self._ids[cache_key] = link.dataverse_id
            return link.dataverse_id
        key = await self.alternate_key(target, dict(ref.values))
        rows = await self.client.query(target.dataverse.entity_set, filter=key_filter(key),
                                       select=[target.dataverse.primary_id], top=1)
        if not rows:
            return None
        self._ids[cache_key] = str(rows[0][target.dataverse.primary_id]).lower()
        return self._ids[cache_key]

    async def alternate_key(self, table_map: TableMap, record: Mapping[str, Any]) -> dict[str, Any]:
        """The alternate key of a projected record, as the Web API addresses it."""
        key: dict[str, Any] = {}
        for part in table_map.dataverse.key:
            if "." in part:
                code = company_code(table_map, "dataverse", record)
                if code is None:
                    raise LookupPending(table_map.name, part, "company (missing in the record)")
                key[f"_{part.split('.')[0]}_value"] = await self.company_id(code)
            else:
                key[part] = record[part]
        return typed_key(table_map, "dataverse", key)

    async def body(self, table_map: TableMap, values: Mapping[str, Any]) -> dict[str, Any]:
        """Projected values -> a Web API body: KeyRefs become `@odata.bind`, None clears a lookup."""
        navs = {lk.dataverse for lk in table_map.lookups}
        if table_map.company is not None:
            navs.add(table_map.company.dataverse)
        out: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(value, KeyRef):
                row_id = await self.row_id(value)
                if row_id is None:
                    raise LookupPending(table_map.name, name, _describe(value))
                out[f"{name}@odata.bind"] = self.client.bind(self.maps[value.map].dataverse.entity_set, row_id)
            elif name in navs:
                out[f"{name}@odata.bind"] = None
            else:
                out[name] = value
        return out

    async def write(self, table_map: TableMap, link: Link | None, projected: Mapping[str, Any],
                    changes: Mapping[str, Any], *, recreate: bool = False) -> Written:
        """Update the linked row (never creating it), else upsert by alternate key. A linked row that
        is gone raises TargetGone unless `recreate`: its delete may be in flight, and an upsert would
        bring back a row a user just deleted."""
        entity_set = table_map.dataverse.entity_set
        if link is not None and link.dataverse_id and link.state == "linked":
            body = await self.body(table_map, changes)
            try:
                await self.client.update(entity_set, link.dataverse_id, body)
                return Written(link.dataverse_id, None, created=False)
            except NotFound:
                if not recreate:
                    raise TargetGone(table_map.name, "Dataverse", link.dataverse_id) from None
        body = await self.body(table_map, projected)
        result = await self.client.upsert(entity_set, await self.alternate_key(table_map, projected), body,
                                          select=[table_map.dataverse.primary_id])
        return Written(result.id.lower(), None, created=result.created)

    async def create_page(self, table_map: TableMap, rows: Sequence[Mapping[str, Any]]) -> list[Written | Exception]:
        """CreateMultiple, CREATE_CHUNK rows a request: one request where a `$batch` makes one operation per
        row. A refused chunk (a bad row, or one created meanwhile) is written again row by row (upserts), so
        the bad row fails alone."""
        out: list[Written | Exception] = []
        dv = table_map.dataverse
        for start in range(0, len(rows), CREATE_CHUNK):
            chunk = rows[start:start + CREATE_CHUNK]
            try:
                bodies = [await self.body(table_map, row) for row in chunk]
                ids = await self.client.create_multiple(dv.entity_set, dv.table, bodies)
                if len(ids) != len(chunk):
                    raise ConnectorError(f"CreateMultiple answered {len(ids)} ids for {len(chunk)} rows")
                out += [Written(row_id, None, created=True) for row_id in ids]
            except Exception:
                out += await _one_by_one(self, table_map, chunk)
        return out

    async def delete(self, table_map: TableMap, link: Link | None, key: tuple[str, ...]) -> bool:
        entity_set = table_map.dataverse.entity_set
        if link is not None and link.dataverse_id:
            return await self.client.delete(entity_set, link.dataverse_id)
        alternate = await self.alternate_key(table_map, _key_record(table_map, key))
        return await self.client.delete(entity_set, key=alternate)


class FnoSide:
    side: Side = "fno"

    def __init__(self, client: FnoClient, maps: MapSet, links: LinkLookup) -> None:
        self.client = client
        self.maps = maps
        self.links = links
        self._parents: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
        self._texts: dict[str, frozenset[str]] = {}

    def columns(self, table_map: TableMap) -> list[str]:
        names = set(table_map.fno.key) | {f.fno for f in table_map.fields if f.fno}
        for lookup in table_map.lookups:
            names |= set(lookup.fno)
        names |= filter_columns(table_map, "fno")
        return sorted(names)

    @staticmethod
    def key(table_map: TableMap, record: Mapping[str, Any]) -> dict[str, Any]:
        """The entity's full key (dataAreaId in lower case) from a record or projected values."""
        key: dict[str, Any] = {}
        for name in table_map.fno.key:
            value = record.get(name)
            if value is None:
                raise KeyError(name)
            key[name] = value.lower() if table_map.company and name == table_map.company.fno else value
        return typed_key(table_map, "fno", key)

    @staticmethod
    def key_from_parts(table_map: TableMap, parts: tuple[str, ...]) -> dict[str, Any]:
        """The F&O key from a canonical record key (company code first, then F&O key order)."""
        names = ([table_map.company.fno] if table_map.company else []) + [f for f, _ in table_map.key_pairs()]
        key = dict(zip(names, parts, strict=True))
        if table_map.company is not None:
            key[table_map.company.fno] = key[table_map.company.fno].lower()
        return typed_key(table_map, "fno", key)

    async def read(self, table_map: TableMap, key: Mapping[str, Any]) -> dict[str, Any] | None:
        return await self.client.get(table_map.fno.entity_set, key, select=self.columns(table_map))

    async def read_linked(self, table_map: TableMap, link: Link) -> dict[str, Any] | None:
        return await self.read(table_map, self.key(table_map, link.fno_key)) if link.fno_key else None

    async def read_current(self, table_map: TableMap, link: Link) -> SourceRow | None:
        # ModifiedDateTime: the field the sweep reads as well (every entity the engine syncs is expected to have it)
        if not link.fno_key:
            return None
        row = await self.client.get(table_map.fno.entity_set, self.key(table_map, link.fno_key),
                                    select=[*self.columns(table_map), "ModifiedDateTime"])
        if row is None:
            return None
        modified = _when(row.pop("ModifiedDateTime", None))
        return SourceRow(row, link.key, fno_key=link.fno_key, modified_at=modified)

    async def read_page(self, table_map: TableMap, *, next_link: str | None, page_size: int) -> SourcePage:
        fno = table_map.fno
        pushed = pushed_filter(table_map, "fno")
        orderby = ",".join(fno.key)
        try:
            page = await self.client.page(fno.entity_set, filter=pushed, select=self.columns(table_map),
                                          orderby=orderby, page_size=page_size, next_link=next_link)
        except ConnectorError as error:
            if pushed is None or next_link is not None or error.status != 400:
                raise
            pushed = None  # the filter is not one the server takes: read everything, filter in Python
            page = await self.client.page(fno.entity_set, select=self.columns(table_map), orderby=orderby,
                                          page_size=page_size)
        return SourcePage([self._source_row(table_map, row) for row in page.rows], page.next_link,
                          filtered=pushed is not None)

    async def read_keys(self, table_map: TableMap, keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], SourceRow]:
        clauses = []
        for key in keys:
            parts = self.key_from_parts(table_map, key)
            clauses.append("(" + " and ".join(f"{name} eq {fno_literal(name, value)}"
                                              for name, value in parts.items()) + ")")
        found: dict[tuple[str, ...], SourceRow] = {}
        wanted = set(keys)
        for start in range(0, len(clauses), KEYS_PER_QUERY):
            rows = await self.client.query(table_map.fno.entity_set,
                                           filter=" or ".join(clauses[start:start + KEYS_PER_QUERY]),
                                           select=self.columns(table_map))
            for row in rows:
                source = self._source_row(table_map, row)
                if source.key is not None and source.key in wanted:
                    found[source.key] = source
        return found

    def _source_row(self, table_map: TableMap, row: Mapping[str, Any]) -> SourceRow:
        record = {name: value for name, value in row.items() if "@" not in name}
        try:
            fno_key: dict[str, Any] | None = self.key(table_map, record)
        except (KeyError, MapValueError):
            fno_key = None
        version = record.get("ControlNumber")
        return _keyed(table_map, "fno", record, fno_key=fno_key, version=str(version) if version is not None else None)

    async def check_parents(self, table_map: TableMap, values: Mapping[str, Any]) -> None:
        """Every lookup this write sets must point at an existing F&O row (else: retried later)."""
        for lookup in table_map.lookups_for("to_fno"):
            present = {ours: values[ours] for ours in lookup.fno if ours in values}
            if not present or all(v in (None, "") for v in present.values()):
                continue
            target = self.maps[lookup.map]
            parent = {theirs: values.get(ours) for ours, theirs in lookup.fno.items()}
            if target.company is not None:
                parent[target.company.fno] = str(values.get(table_map.company.fno if table_map.company else "", ""))
            cache_key = (target.name, tuple(sorted(parent.items())))
            if cache_key in self._parents:
                continue
            if await self.client.get(target.fno.entity_set, parent, select=list(parent)) is None:
                raise LookupPending(table_map.name, lookup.dataverse,
                                    f"{target.fno.entity_set}({', '.join(f'{k}={v}' for k, v in parent.items())})")
            self._parents.add(cache_key)

    def _text_fields(self, table_map: TableMap) -> frozenset[str]:
        """The map's F&O fields that hold text (an emptied one is written as ""), derived once per map."""
        if table_map.name not in self._texts:
            texts = {f.fno for f in table_map.fields if f.fno and f.type == "string"}
            self._texts[table_map.name] = frozenset(texts | {n for lookup in table_map.lookups for n in lookup.fno})
        return self._texts[table_map.name]

    def _body(self, table_map: TableMap, values: Mapping[str, Any], key: Mapping[str, Any]) -> dict[str, Any]:
        # F&O has no nulls: an emptied text is an empty string; an emptied enum, number or date is left
        # out (F&O keeps or defaults it) rather than sent as a value the entity would refuse.
        texts = self._text_fields(table_map)
        body: dict[str, Any] = {}
        for name, value in values.items():
            if name in key:
                continue
            if value is None:
                if name in texts:
                    body[name] = ""
                continue
            body[name] = value
        return body

    async def write(self, table_map: TableMap, link: Link | None, projected: Mapping[str, Any],
                    changes: Mapping[str, Any], *, recreate: bool = False) -> Written:
        """Update the linked record, else upsert by its full key; a linked record that is gone raises
        TargetGone unless `recreate` (as on the Dataverse side)."""
        key = self.key(table_map, {**(link.fno_key if link and link.fno_key else {}), **projected})
        entity_set = table_map.fno.entity_set
        if link is not None and link.fno_key and link.state == "linked":
            await self.check_parents(table_map, {**projected, **changes})
            body = self._body(table_map, changes, key)
            if not body:
                return Written(None, key, created=False)
            try:
                await self.client.update(entity_set, key, body)
                return Written(None, key, created=False)
            except NotFound:
                if not recreate:
                    raise TargetGone(table_map.name, "F&O", fno_id(key)) from None
        await self.check_parents(table_map, projected)
        created = await self.client.upsert(entity_set, key, self._body(table_map, projected, key))
        return Written(None, key, created=created)

    async def create_page(self, table_map: TableMap, rows: Sequence[Mapping[str, Any]]) -> list[Written | Exception]:
        """F&O has no bulk create message: the writes go side by side, which the connector sends as `$batch`
        requests (each write its own changeset, so a refused row fails alone)."""
        return await _one_by_one(self, table_map, rows)

    async def delete(self, table_map: TableMap, link: Link | None, key: tuple[str, ...]) -> bool:
        linked = self.key(table_map, link.fno_key) if link is not None and link.fno_key else None
        return await self.client.delete(table_map.fno.entity_set, linked or self.key_from_parts(table_map, key))


async def _one_by_one(side: SidePort, table_map: TableMap,
                      rows: Sequence[Mapping[str, Any]]) -> list[Written | Exception]:
    async def one(row: Mapping[str, Any]) -> Written | Exception:
        try:
            return await side.write(table_map, None, row, row)
        except Exception as error:  # this row's answer
            return error
    return list(await asyncio.gather(*(one(row) for row in rows)))


def fno_id(key: Mapping[str, Any]) -> str:
    """An F&O record's key as the activity and error logs show it: `dataAreaId=usmf,CustomerAccount=US-001`."""
    return ",".join(f"{name}={value}" for name, value in key.items())


def _key_record(table_map: TableMap, key: tuple[str, ...]) -> dict[str, Any]:
    """The Dataverse key columns of a canonical key (company code first, then F&O key order)."""
    parts = list(key)
    record: dict[str, Any] = {}
    if table_map.company is not None:
        dotted = next(k for k in table_map.dataverse.key if "." in k)
        record[dotted] = parts.pop(0)
    for (_, column), value in zip(table_map.key_pairs(), parts, strict=True):
        record[column] = value
    return record


def _describe(ref: KeyRef) -> str:
    return f"{ref.map}({', '.join(f'{part}={value}' for part, value in ref.values)})"
