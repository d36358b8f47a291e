"""In-memory stand-ins for what the apply engine talks to: the link store, the activity and error
recorders, and the two OData clients (dict-backed tables), so the real DataverseSide and FnoSide
run on top of them. Behaviour follows the real parts where the engine depends on it: etag-guarded
link saves, 404 on a PATCH of a missing row, upsert by alternate key, case-insensitive F&O keys."""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from core.connectors.dataverse import UpsertResult
from core.connectors.errors import NotFound
from core.maps.keys import encode_key
from core.store.activity import ActivityEntry
from core.store.errors import ErrorEntry
from core.store.links import Link, LinkConflict
from core.store.modes import ModeChanged, ParkedChange
from core.store.queues import QueuedChange
from core.sync.catchup import CatchUpJob
from core.sync.modes import MapState, Transition
from core.sync.sweep import Checkpoint


class MemoryLinks:
    """LinkStore semantics: insert only when absent, update only with the current etag."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Link] = {}
        self.ids: dict[tuple[str, str], tuple[str, ...]] = {}
        self.saves = 0
        self.conflicts = 0
        self._etags = itertools.count(1)
        self.before_save: list[Callable[[Link], None]] = []

    async def get(self, map: str, key: tuple[str, ...]) -> Link | None:
        link = self.rows.get((map, encode_key(key)))
        return copy.deepcopy(link) if link is not None else None

    async def find(self, map: str, side: str, record_id: str) -> Link | None:
        key = self.ids.get((map, record_id.lower()))
        if key is None:
            return None
        link = await self.get(map, key)
        return link if link is not None and (link.dataverse_id or "").lower() == record_id.lower() else None

    async def save(self, link: Link) -> Link:
        hooks, self.before_save = self.before_save, []
        for hook in hooks:  # another writer gets in between our read and our save
            hook(link)
        current = self.rows.get((link.map, encode_key(link.key)))
        if (current is None) != (link.etag is None) or (current is not None and current.etag != link.etag):
            self.conflicts += 1
            raise LinkConflict(f"link {link.map}/{encode_key(link.key)} changed since it was read")
        saved = replace(copy.deepcopy(link), etag=f"W/{next(self._etags)}")
        self.rows[(link.map, encode_key(link.key))] = saved
        if saved.dataverse_id:
            self.ids[(link.map, saved.dataverse_id.lower())] = saved.key
        self.saves += 1
        return copy.deepcopy(saved)

    def bump(self, map: str, key: tuple[str, ...]) -> None:
        """Another writer saved this link: its etag moves on, so a copy read before is stale."""
        stored = self.rows[(map, encode_key(key))]
        stored.etag = f"W/{next(self._etags)}"


class MemoryActivity:
    def __init__(self) -> None:
        self.entries: list[ActivityEntry] = []

    async def record(self, entries: list[ActivityEntry]) -> None:
        self.entries.extend(entries)


class MemoryErrors:
    def __init__(self) -> None:
        self.entries: list[ErrorEntry] = []

    async def record(self, entry: ErrorEntry) -> ErrorEntry:
        self.entries.append(entry)
        return entry


@dataclass
class Call:
    method: str
    entity_set: str
    target: Any
    body: dict[str, Any] = field(default_factory=dict)


_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+(.+?)\s*$")


def _literal(text: str) -> Any:
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return text


class FakeDataverse:
    """The DataverseClient methods DataverseSide calls, over {entity set: {row id: row}}.

    Rows hold columns and lookups as `_<nav>_value` row ids, like the Web API answers them."""

    def __init__(self, primary_ids: Mapping[str, str]) -> None:
        self.primary_ids = dict(primary_ids)  # entity set -> primary id column
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in primary_ids}
        self.calls: list[Call] = []
        self.failures: list[Exception] = []  # raised, in order, by the next writes (update/upsert)

    def add(self, entity_set: str, row: Mapping[str, Any], row_id: str | None = None) -> str:
        row_id = (row_id or str(uuid.uuid4())).lower()
        self.tables[entity_set][row_id] = {**row, self.primary_ids[entity_set]: row_id}
        return row_id

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method in ("update", "upsert", "delete")]

    @staticmethod
    def bind(entity_set: str, row_id: str) -> str:
        return f"/{entity_set}({row_id})"

    async def get(self, entity_set: str, row_id: str | None = None, *, key: Mapping[str, Any] | None = None,
                  select: Sequence[str] | None = None, headers: Mapping[str, str] | None = None
                  ) -> dict[str, Any] | None:
        self.calls.append(Call("get", entity_set, row_id))
        row = self.tables[entity_set].get(str(row_id).lower())
        if row is None:
            return None
        return {name: row.get(name) for name in select} if select else dict(row)

    async def query(self, entity_set: str, *, filter: str | None = None, select: Sequence[str] | None = None,
                    top: int | None = None, **_: Any) -> list[dict[str, Any]]:
        self.calls.append(Call("query", entity_set, filter))
        wanted = {}
        for clause in (filter or "").split(" and "):
            if clause.strip():
                match = _CLAUSE.match(clause)
                assert match, f"the fake understands only 'x eq y' clauses joined by 'and': {filter!r}"
                wanted[match.group(1)] = _literal(match.group(2))
        rows = [r for r in self.tables[entity_set].values()
                if all(str(r.get(name)) == str(value) for name, value in wanted.items())]
        rows = rows[:top] if top else rows
        return [{n: r.get(n) for n in select} if select else dict(r) for r in rows]

    def _apply(self, row: dict[str, Any], body: Mapping[str, Any]) -> None:
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                row[f"_{nav}_value"] = value[value.index("(") + 1 : -1] if value else None
            else:
                row[name] = value

    async def update(self, entity_set: str, row_id: str, body: Mapping[str, Any], **_: Any) -> None:
        self.calls.append(Call("update", entity_set, row_id, dict(body)))
        if self.failures:
            raise self.failures.pop(0)
        row = self.tables[entity_set].get(row_id.lower())
        if row is None:
            raise NotFound("Does Not Exist", status=404, method="PATCH", url=f"{entity_set}({row_id})")
        self._apply(row, body)

    def _by_key(self, entity_set: str, key: Mapping[str, Any]) -> str | None:
        for row_id, row in self.tables[entity_set].items():
            if all(str(row.get(k)) == str(v) for k, v in key.items()):
                return row_id
        return None

    async def upsert(self, entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], *,
                     select: Sequence[str] | None = None, **_: Any) -> UpsertResult:
        clean = {name: value for name, value in body.items() if name not in key}
        self.calls.append(Call("upsert", entity_set, dict(key), clean))
        if self.failures:
            raise self.failures.pop(0)
        row_id = self._by_key(entity_set, key)
        created = row_id is None
        if row_id is None:
            row_id = self.add(entity_set, dict(key))
        row = self.tables[entity_set][row_id]
        self._apply(row, clean)
        return UpsertResult(id=row_id, created=created, row=dict(row))

    async def delete(self, entity_set: str, row_id: str | None = None, *, key: Mapping[str, Any] | None = None,
                     **_: Any) -> bool:
        self.calls.append(Call("delete", entity_set, row_id or dict(key or {})))
        found = row_id.lower() if row_id else self._by_key(entity_set, key or {})
        return self.tables[entity_set].pop(found, None) is not None if found else False


def _fno_key(key: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    # F&O compares keys case-insensitively (SQL collation): usmf and USMF are one company.
    return tuple(sorted((name, str(value).casefold()) for name, value in key.items()))


class FakeFno:
    """The FnoClient methods FnoSide calls, over {entity set: {normalised key: record}}."""

    def __init__(self, keys: Mapping[str, Sequence[str]]) -> None:
        self.keys = {name: list(fields) for name, fields in keys.items()}  # entity set -> key fields
        self.tables: dict[str, dict[tuple[tuple[str, str], ...], dict[str, Any]]] = {name: {} for name in keys}
        self.calls: list[Call] = []

    def add(self, entity_set: str, record: Mapping[str, Any]) -> None:
        key = {name: record[name] for name in self.keys[entity_set]}
        self.tables[entity_set][_fno_key(key)] = dict(record)

    def row(self, entity_set: str, **key: Any) -> dict[str, Any] | None:
        return self.tables[entity_set].get(_fno_key(key))

    def record(self, entity_set: str, **key: Any) -> dict[str, Any]:
        """The stored record itself (edit it to change F&O behind the engine's back)."""
        found = self.row(entity_set, **key)
        assert found is not None, f"no {entity_set} record {key}"
        return found

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method in ("update", "create", "delete")]

    async def get(self, entity_set: str, key: Mapping[str, Any], *,
                  select: Sequence[str] | None = None) -> dict[str, Any] | None:
        self.calls.append(Call("get", entity_set, dict(key)))
        record = self.tables[entity_set].get(_fno_key(key))
        if record is None:
            return None
        return {name: record.get(name) for name in select} if select else dict(record)

    async def update(self, entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        clean = {name: value for name, value in body.items() if name not in key}
        self.calls.append(Call("update", entity_set, dict(key), clean))
        record = self.tables[entity_set].get(_fno_key(key))
        if record is None:
            raise NotFound("Resource not found", status=404, method="PATCH", url=entity_set)
        record.update(clean)

    async def upsert(self, entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
        try:
            await self.update(entity_set, key, body)
            return False
        except NotFound:
            pass
        self.calls.append(Call("create", entity_set, dict(key), {**body, **key}))
        self.add(entity_set, {**body, **key})
        return True

    async def delete(self, entity_set: str, key: Mapping[str, Any]) -> bool:
        self.calls.append(Call("delete", entity_set, dict(key)))
        return self.tables[entity_set].pop(_fno_key(key), None) is not None


class MemoryModes:
    """Map modes (core.store.modes.ModeStore), etag-guarded."""

    def __init__(self) -> None:
        self.rows: dict[str, MapState] = {}
        self.transitions: list[Transition] = []
        self.version = 0

    async def get(self, map_name: str) -> MapState:
        return self.rows.get(map_name) or MapState(map=map_name)

    async def all(self) -> dict[str, MapState]:
        return dict(self.rows)

    async def save(self, state: MapState, transition: Transition | None = None) -> MapState:
        stored = self.rows.get(state.map)
        if (stored.etag if stored else None) != state.etag:
            raise ModeChanged(state.map)
        self.version += 1
        saved = replace(state, etag=str(self.version))
        self.rows[state.map] = saved
        if transition is not None:
            self.transitions.insert(0, transition)
        return saved

    async def history(self, map_name: str, limit: int = 50) -> list[Transition]:
        return [t for t in self.transitions if t.map == map_name][:limit]


class MemoryParked:
    """Parked changes (core.store.modes.ParkedStore)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], ParkedChange] = {}
        self.version = 0

    async def get(self, map_name: str, record: str) -> ParkedChange | None:
        return self.rows.get((map_name, record))

    async def put(self, change: ParkedChange) -> None:
        self.version += 1
        self.rows[(change.map, change.record)] = replace(change, etag=str(self.version))

    async def page(self, map_name: str, size: int) -> list[ParkedChange]:
        return [c for (m, _), c in sorted(self.rows.items()) if m == map_name][:size]

    async def count(self, map_name: str) -> tuple[int, int]:
        mine = [c for (m, _), c in self.rows.items() if m == map_name]
        return len(mine), sum(c.changes for c in mine)

    async def remove(self, changes: list[ParkedChange]) -> list[ParkedChange]:
        kept = []
        for change in changes:
            now = self.rows.get((change.map, change.record))
            if now is not None and now.etag != change.etag:
                kept.append(change)
            else:
                self.rows.pop((change.map, change.record), None)
        return kept


class MemorySends:
    """What the catch-up sends: changes to the changes queue, jobs to the sync-pages queue."""

    def __init__(self) -> None:
        self.changes: list[QueuedChange] = []
        self.jobs: list[tuple[CatchUpJob, datetime | None]] = []

    async def send(self, changes: list[QueuedChange]) -> None:
        self.changes.extend(changes)

    async def send_catch_up(self, job: CatchUpJob, *, at: datetime | None = None) -> None:
        self.jobs.append((job, at))


class MemoryCheckpoints:
    """The sweep's and the validity timer's checkpoint store (core.sync.sweep.Checkpoints) in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, Checkpoint] = {}

    async def get(self, source: str) -> Checkpoint | None:
        return self.rows.get(source)

    async def put(self, source: str, checkpoint: Checkpoint) -> None:
        self.rows[source] = checkpoint
