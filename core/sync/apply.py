"""Apply one change event to the other side of its map: the heart of live sync.

For the map the event feeds: get the whole source record (the event's values, or a read when
they are partial, trimmed or an F&O event), apply the source filter, project, then compare
with what the link row says the target already holds: equal means an echo of our own write or
a change to unmapped columns, and nothing is written. Otherwise check staleness and the map's
conflict policy, resolve lookups (a missing parent is `LookupPending`, retried later), write
only the changed columns, and save the link (etag-guarded; a lost race re-runs the change).
Deletes travel by integration key (from the link, else the pre image) and leave a tombstone
link so their echo is recognised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from core.events.model import ChangeEvent
from core.maps import MapSet, MapValueError, TableMap, encode_key, evaluate, project, record_key
from core.maps.model import Side
from core.store.links import Link, LinkConflict
from core.sync.compare import canon, canon_all, changed, side_values, values_hash
from core.sync.errors import BadChange, ConflictSkipped, LinkContention
from core.sync.sides import DataverseSide, FnoSide, filter_columns, fno_id

ResultOutcome = Literal["applied", "skipped"]


class Links(Protocol):
    async def get(self, map: str, key: tuple[str, ...]) -> Link | None: ...
    async def find(self, map: str, side: str, record_id: str) -> Link | None: ...
    async def save(self, link: Link) -> Link: ...


@dataclass(frozen=True)
class Result:
    outcome: ResultOutcome
    reason: str
    key: str
    target_id: str | None = None


def other(side: Side) -> Side:
    return "dataverse" if side == "fno" else "fno"


def record_label(event: ChangeEvent, maps: Mapping[str, TableMap] | None = None) -> str:
    """The record's name in the activity and error logs: its canonical integration key when the event
    carries it (F&O events), so failures list under the same key as successes; else the row id."""
    if event.source == "fno" and event.keys:
        if maps is not None and event.map in maps:
            try:
                return encode_key(record_key(maps[event.map], "fno", {**(event.pre or {}), **event.keys}))
            except MapValueError:
                pass
        return "|".join(str(v) for v in event.keys.values())
    return f"dataverse:{event.record_id}"


class Applier:
    def __init__(self, maps: MapSet, links: Links, dataverse: DataverseSide, fno: FnoSide, *,
                 engine_user: str = "") -> None:
        self.maps = maps
        self.links = links
        self.dataverse = dataverse
        self.fno = fno
        self.engine_user = engine_user.lower()

    async def apply(self, event: ChangeEvent, *, last_attempt: bool = False) -> Result:
        """Apply one change. `last_attempt` (the worker's final delivery) lets a write bring back a
        linked target row that was deleted and whose delete never arrived (TargetGone before that)."""
        if event.map is None or event.map not in self.maps:
            raise BadChange(f"the change names no known map ({event.map!r})")
        table_map = self.maps[event.map]
        for _ in range(4):
            try:
                if event.operation == "delete":
                    return await self._delete(table_map, event)
                return await self._upsert(table_map, event, recreate=last_attempt)
            except LinkConflict:
                continue  # the other side's change of this record won the link row: decide again
        raise LinkContention(f"map {table_map.name!r}: the link of {record_label(event, self.maps)} kept changing")

    # -- create / update / refetch ------------------------------------------------------------------
    async def _upsert(self, table_map: TableMap, event: ChangeEvent, *, recreate: bool) -> Result:
        source: Side = event.source
        target = other(source)
        direction = "to_dataverse" if source == "fno" else "to_fno"
        record, link = await self._source_record(table_map, event)
        if (source == "dataverse" and link is not None and link.state == "deleted"
                and (link.dataverse_id or "") == (event.record_id or "").lower()):
            # Async webhooks arrive late: a change of a row whose delete was already synced must not
            # bring the record back on the other side.
            return Result("skipped", "stale: this Dataverse row was deleted after the change",
                          encode_key(link.key))
        if record is None:
            return Result("skipped", f"the record no longer exists in {_side_name(source)} (a delete follows)",
                          record_label(event, self.maps))
        node = table_map.source_filter(source)
        if node is not None and not evaluate(node, record):
            return Result("skipped", f"filtered out by the {_side_name(source)} filter of the map",
                          record_label(event, self.maps))
        key = record_key(table_map, source, record)
        key_text = encode_key(key)
        if link is None:
            link = await self.links.get(table_map.name, key)
        if source == "dataverse" and _stale(event, link):
            return Result("skipped", f"stale: version {event.version} is older than the applied "
                          f"{link.versions.get('dataverse') if link else ''}", key_text)
        projected = project(table_map, direction, record, maps=self.maps)
        source_values = side_values(table_map, source, record)
        linked = link is not None and link.state == "linked"
        known = link.values.get(target, {}) if linked and link is not None else {}
        changes = changed(projected, known) if linked else dict(projected)
        if linked and link is not None and not changes:
            echo = source_values == link.values.get(source) or self._ours(event)
            await self._remember(link, event, source_values, echo=echo)
            reason = ("echo: no mapped column changed since the engine last synced this record" if echo
                      else f"no-op: {_side_name(target)} already holds these values")
            return Result("skipped", reason, key_text)
        if linked and link is not None and self._ours(event):
            if not _agrees(source_values, link.values.get(source, {})):
                # The engine's own write, but not its latest: a webhook overtaken by later writes of this
                # record. Sending it back would undo them on the other side.
                return Result("skipped", "stale: an earlier write of the engine's own, since overtaken", key_text)
            # Written by the engine and holding what it wrote: an echo, even where the other side differs
            # in columns this side does not send (one-way mappings); those are only remembered.
            await self._remember(link, event, source_values, echo=True)
            return Result("skipped", "echo: the engine's own write came back", key_text)
        if linked and link is not None:
            await self._check_conflict(table_map, event, link, changes)
        side = self.dataverse if target == "dataverse" else self.fno
        written = await side.write(table_map, link if linked else None, projected, changes, recreate=recreate)
        link = link or Link(map=table_map.name, key=key)
        link.state = "linked"
        link.values[target] = {**known, **canon_all(projected)}
        link.values[source] = source_values
        link.hashes = {s: values_hash(v) for s, v in link.values.items()}
        if source == "dataverse":
            link.dataverse_id = (event.record_id or link.dataverse_id or "").lower() or None
            link.fno_key = written.fno_key or link.fno_key
        else:
            link.fno_key = FnoSide.key(table_map, record)
            link.dataverse_id = written.record_id or link.dataverse_id
        self._note_version(link, event)
        link.updated_at = datetime.now(UTC)
        await self.links.save(link)
        if written.created and linked:
            what = f"created again: the linked {_side_name(target)} record had been deleted and no delete arrived"
        else:
            what = "created" if written.created else f"updated {', '.join(sorted(changes))}"
        target_id = written.record_id or (fno_id(written.fno_key) if written.fno_key else None)
        return Result("applied", what, key_text, target_id)

    async def _source_record(self, table_map: TableMap,
                             event: ChangeEvent) -> tuple[dict[str, Any] | None, Link | None]:
        if event.source == "fno":
            try:
                key = FnoSide.key(table_map, {**(event.pre or {}), **event.keys})
            except KeyError as missing:
                raise BadChange(f"the F&O event lacks key field {missing}") from None
            return await self.fno.read(table_map, key), None
        if not event.record_id:
            raise BadChange("the Dataverse event has no record id")
        link = await self.links.find(table_map.name, "dataverse", event.record_id)
        record = event.record()
        needed = self._needed_dataverse_columns(table_map)
        # Images registered by deployment carry every needed column; anything short of that is re-read.
        if event.operation == "refetch" or (event.operation != "create" and not needed <= record.keys()):
            return await self.dataverse.read(table_map, event.record_id), link
        if event.operation == "create":
            # A Create carries every column the caller set; the others are empty.
            record = {**{name: None for name in needed - record.keys()}, **record}
        return await self.dataverse.resolve(table_map, record), link

    @staticmethod
    def _needed_dataverse_columns(table_map: TableMap) -> set[str]:
        names = {f.dataverse for f in table_map.fields_for("to_fno") if f.dataverse}
        names |= {lk.dataverse for lk in table_map.lookups_for("to_fno")}
        names |= {k for k in table_map.dataverse.key if "." not in k}
        if table_map.company is not None:
            names.add(table_map.company.dataverse)
        return names | filter_columns(table_map, "dataverse")

    def _ours(self, event: ChangeEvent) -> bool:
        return bool(self.engine_user) and (event.initiated_by or "").strip("{}").lower() == self.engine_user

    async def _check_conflict(self, table_map: TableMap, event: ChangeEvent, link: Link,
                              changes: Mapping[str, Any]) -> None:
        target = other(event.source)
        if table_map.conflict == "latest_wins":
            their_at = link.versions.get(f"{target}_at")
            if their_at and datetime.fromisoformat(their_at) > event.occurred_at:
                raise ConflictSkipped(f"map {table_map.name!r}: {_side_name(target)} changed this record at "
                                      f"{their_at}, after this change ({event.occurred_at.isoformat()}); "
                                      "latest wins")
            return
        if event.source == table_map.primary:
            return
        current = await self._read_target(table_map, link)
        if current is None:
            return
        now = side_values(table_map, target, current)
        known = link.values.get(target, {})
        moved = sorted(name for name in changes if name in now and now.get(name) != known.get(name)
                       and now.get(name) != canon(changes[name]))
        if moved:
            raise ConflictSkipped(
                f"map {table_map.name!r}: {_side_name(target)} (the primary side) changed {', '.join(moved)} "
                f"since the last sync; primary wins, so this {_side_name(event.source)} change is not applied. "
                "Resubmit it to apply it anyway once the primary's change has synced.")

    async def _read_target(self, table_map: TableMap, link: Link) -> dict[str, Any] | None:
        if table_map.primary == "dataverse":
            if link.dataverse_id:
                return await self.dataverse.read(table_map, link.dataverse_id)
            return None
        if link.fno_key:
            return await self.fno.read(table_map, link.fno_key)
        return None

    async def _remember(self, link: Link, event: ChangeEvent, source_values: dict[str, Any], *,
                        echo: bool = False) -> None:
        """Keep the link's view of the source current (no write happened). An echo is not a change
        made on that side, so it does not move that side's change time (latest wins compares those)."""
        before = (link.values.get(event.source), link.versions.get(event.source))
        link.values[event.source] = source_values
        self._note_version(link, event, changed=not echo)
        if (link.values.get(event.source), link.versions.get(event.source)) != before:
            link.hashes = {s: values_hash(v) for s, v in link.values.items()}
            link.updated_at = datetime.now(UTC)
            await self.links.save(link)

    @staticmethod
    def _note_version(link: Link, event: ChangeEvent, *, changed: bool = True) -> None:
        if event.version:
            link.versions[event.source] = event.version
        if not changed:
            return
        at = link.versions.get(f"{event.source}_at")
        if at is None or datetime.fromisoformat(at) < event.occurred_at:
            link.versions[f"{event.source}_at"] = event.occurred_at.isoformat()

    # -- delete ---------------------------------------------------------------------------------
    async def _delete(self, table_map: TableMap, event: ChangeEvent) -> Result:
        if event.source == "dataverse":
            link = await self.links.find(table_map.name, "dataverse", event.record_id) if event.record_id else None
            if link is not None:
                key = link.key
            else:
                pre = await self.dataverse.resolve(table_map, event.pre or {})
                try:
                    key = record_key(table_map, "dataverse", pre)
                except MapValueError:
                    return Result("skipped", "delete of a row never synced, and its pre image lacks the "
                                  "integration key", record_label(event, self.maps))
                link = await self.links.get(table_map.name, key)
        else:
            record = {**(event.pre or {}), **event.keys}
            try:
                key = record_key(table_map, "fno", record)
            except MapValueError as error:
                raise BadChange(f"the F&O delete lacks its key: {error}") from None
            link = await self.links.get(table_map.name, key)
        key_text = encode_key(key)
        if link is not None and link.state == "deleted":
            return Result("skipped", "echo: the delete was already propagated", key_text)
        if event.source == "dataverse":
            fno_key = link.fno_key if link is not None and link.fno_key else FnoSide.key_from_parts(table_map, key)
            gone = await self.fno.delete(table_map, fno_key)
        else:
            gone = await self.dataverse.delete(table_map, link, _dataverse_key_record(table_map, key))
        link = link or Link(map=table_map.name, key=key)
        link.state = "deleted"
        link.values = {}
        link.hashes = {}
        if event.source == "dataverse" and event.record_id:
            link.dataverse_id = event.record_id.lower()  # the tombstone keeps the deleted row's id
        self._note_version(link, event)
        link.updated_at = datetime.now(UTC)
        await self.links.save(link)
        if not gone:
            return Result("skipped", f"already absent in {_side_name(other(event.source))}", key_text)
        return Result("applied", "deleted", key_text)


def _dataverse_key_record(table_map: TableMap, key: tuple[str, ...]) -> dict[str, Any]:
    """The Dataverse key columns of a canonical key (company code first, then F&O key order)."""
    parts = list(key)
    record: dict[str, Any] = {}
    if table_map.company is not None:
        dotted = next(k for k in table_map.dataverse.key if "." in k)
        record[dotted] = parts.pop(0)
    for (_, column), value in zip(table_map.key_pairs(), parts, strict=True):
        record[column] = value
    return record


def _agrees(seen: Mapping[str, Any], known: Mapping[str, Any]) -> bool:
    """Whether every value known for the side is what the event shows (columns in both only)."""
    return all(seen[name] == value for name, value in known.items() if name in seen)


def _stale(event: ChangeEvent, link: Link | None) -> bool:
    applied = link.versions.get("dataverse") if link is not None else None
    if not event.version or not applied:
        return False
    try:
        return int(event.version) < int(applied)
    except ValueError:
        return False


def _side_name(side: Side) -> str:
    return "F&O" if side == "fno" else "Dataverse"
