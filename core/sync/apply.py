"""Apply one change event to the other side of its map: the heart of live sync.

For the map the event feeds: get the whole source record (the event's values, or a read when
they are partial, trimmed or an F&O event) and the record's link, then let the pure sync rule
(core.sync.decide) say what to do: skip (echo, no-op, filtered, stale), remember the source's
values, refuse (conflict policy), write or delete. A write resolves lookups (a missing parent is
`LookupPending`, retried later) and sends only the changed columns; the link then moves on
through its transitions and is saved etag-guarded (a lost race decides again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from core.events.model import ChangeEvent
from core.maps import MapSet, TableMap, project
from core.maps.model import Side
from core.sync.compare import canon_all, changed, side_values
from core.sync.decide import (
    Delete,
    Refuse,
    Remember,
    Skip,
    Write,
    WriteBack,
    check_latest,
    check_primary,
    decide,
    held,
    record_label,
    screen,
    side_name,
)
from core.sync.domain import Link, LinkConflict
from core.sync.errors import BadChange, ConflictSkipped, LinkContention, NotOnline
from core.sync.sides import DataverseSide, FnoSide, SidePort, fno_id

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


class Applier:
    def __init__(self, maps: MapSet, links: Links, dataverse: DataverseSide, fno: FnoSide, *,
                 engine_user: str = "") -> None:
        self.maps = maps
        self.links = links
        self.dataverse = dataverse
        self.fno = fno
        self.sides: dict[Side, SidePort] = {"dataverse": dataverse, "fno": fno}
        self.engine_user = engine_user.lower()

    async def apply(self, event: ChangeEvent, *, last_attempt: bool = False, online: bool = False) -> Result:
        """Apply one change. `last_attempt` (the worker's final delivery) lets a write bring back a
        linked target row that was deleted and whose delete never arrived (TargetGone before that).
        `online`: called from inside the user's Dataverse save (a synchronous step), so the Dataverse row
        is neither read nor written (that would wait on the save itself); NotOnline says when it must."""
        if event.map is None or event.map not in self.maps:
            raise BadChange(f"the change names no known map ({event.map!r})")
        table_map = self.maps[event.map]
        for _ in range(4):
            try:
                return await self._apply(table_map, event, recreate=last_attempt, online=online)
            except LinkConflict:
                continue  # the other side's change of this record won the link row: decide again
        raise LinkContention(f"map {table_map.name!r}: the link of {record_label(event, self.maps)} kept changing")

    async def _apply(self, table_map: TableMap, event: ChangeEvent, *, recreate: bool, online: bool) -> Result:
        if event.operation == "delete":
            record, link = await self._deleted_key(table_map, event)
        else:
            record, link = await self._source_record(table_map, event, online=online)
        # The rule's first part says which link to read (none for a record gone or filtered out).
        screened = screen(table_map, event, record, link, maps=self.maps)
        if isinstance(screened, Skip):
            return Result("skipped", screened.reason, screened.key)
        if link is None:
            link = await self.links.get(table_map.name, screened)
        decision = decide(table_map, event, record, link, ours=self._ours(event), maps=self.maps)
        if isinstance(decision, Skip):
            return Result("skipped", decision.reason, decision.key)
        if isinstance(decision, Refuse):
            raise ConflictSkipped(decision.reason)
        if isinstance(decision, Remember):
            assert link is not None  # only a linked record is remembered
            if link.remembered(event, decision.source_values, echo=decision.echo):
                await self.links.save(link)
            return Result("skipped", decision.reason, decision.key)
        if isinstance(decision, Delete):
            return await self._delete(table_map, event, link, decision)
        if isinstance(decision, WriteBack):
            assert link is not None  # only a linked record meets the conflict policy
            if online and decision.loser == "dataverse":
                raise NotOnline(f"map {table_map.name!r}: {decision.reason}; writing F&O's later values back "
                                "to Dataverse cannot happen inside the save")
            return await self._write_back(table_map, event, link, decision)
        assert record is not None  # a write has a source record
        return await self._write(table_map, event, record, link, decision, recreate=recreate, online=online)

    async def _write(self, table_map: TableMap, event: ChangeEvent, record: dict[str, Any], link: Link | None,
                     decision: Write, *, recreate: bool, online: bool = False) -> Result:
        side = self.sides[decision.target]
        if decision.check_primary:
            assert link is not None  # only an update checks the primary side
            primary_now = await side.read_linked(table_map, link)
            refusal = check_primary(table_map, event, link, decision, primary_now)
            if refusal is not None:
                raise ConflictSkipped(refusal.reason)
            if primary_now is not None and held(table_map, decision, primary_now):
                return await self._found_written(table_map, event, link, decision)
        overwrote = None
        if decision.check_latest:
            assert link is not None  # only an update checks for a change not synced yet
            current = await side.read_current(table_map, link)
            verdict = check_latest(table_map, event, link, decision, current.record if current else None,
                                   current.modified_at if current else None)
            if isinstance(verdict, WriteBack):
                if online and verdict.loser == "dataverse":
                    raise NotOnline(f"map {table_map.name!r}: {verdict.reason}; writing F&O's later values back "
                                    "to Dataverse cannot happen inside the save")
                if current is not None and current.modified_at is not None:
                    link.noticed(verdict.winner, verdict.contested, current.modified_at)
                return await self._write_back(table_map, event, link, verdict)
            overwrote = verdict
            if verdict is None and current is not None and held(table_map, decision, current.record):
                return await self._found_written(table_map, event, link, decision)
        written = await side.write(table_map, link if decision.update else None, decision.projected,
                                   decision.changes, recreate=recreate)
        link = link or Link(map=table_map.name, key=decision.key)
        if event.source == "dataverse":
            dataverse_id, fno_key = (event.record_id or "").lower() or None, written.fno_key
        else:
            dataverse_id, fno_key = written.record_id, FnoSide.key(table_map, record)
        link.wrote(event, target_values=canon_all(decision.projected), source_values=decision.source_values,
                   dataverse_id=dataverse_id, fno_key=fno_key)
        await self.links.save(link)
        target_id = written.record_id or (fno_id(written.fno_key) if written.fno_key else None)
        reason = decision.reason(created=written.created)
        return Result("applied", f"{reason}; {overwrote}" if overwrote else reason, decision.key_text, target_id)

    async def _found_written(self, table_map: TableMap, event: ChangeEvent, link: Link, decision: Write) -> Result:
        """The target already holds what this update would write (core.sync.decide.held): no second write (it would
        change nothing but the row's version, and raise an echo); the link learns it was applied."""
        link.wrote(event, target_values=canon_all(decision.projected), source_values=decision.source_values,
                   dataverse_id=None, fno_key=None)  # an update: the link's ids stand
        await self.links.save(link)
        # Applied, by the earlier attempt: this one records it (the activity log has no entry of that one).
        return Result("applied", f"{decision.reason(created=False)}, found written already: an earlier attempt "
                      "of this change wrote it and was cut off before recording it", decision.key_text)

    async def _write_back(self, table_map: TableMap, event: ChangeEvent, link: Link,
                          decision: WriteBack) -> Result:
        """Latest wins and the other side changed some of this change's columns later: write the winner's
        current values of those columns over it, and this change's other columns to the winner, unless
        the loser changed again since (that later change is judged on its own when it arrives)."""
        winner, loser = decision.winner, decision.loser
        current = await self.sides[winner].read_linked(table_map, link)
        if current is None:
            raise ConflictSkipped(f"map {table_map.name!r}: {decision.reason}; the {side_name(winner)} record is "
                                  "gone, so there is no later version to write back (its delete should follow)")
        now = await self.sides[loser].read_linked(table_map, link)
        if now is not None and side_values(table_map, loser, now) != decision.source_values:
            return Result("skipped", f"{decision.reason}; {side_name(loser)} changed the record again since, and "
                          "that change is applied on its own", decision.key_text)
        if decision.forward:
            await self.sides[winner].write(table_map, link, decision.projected, decision.forward)
        direction: Literal["to_dataverse", "to_fno"] = "to_dataverse" if winner == "fno" else "to_fno"
        projected = project(table_map, direction, current, maps=self.maps)
        contested = (table_map.counterparts(winner, decision.contested) if link.keeps_column_times
                     else set(projected))
        back = {name: value for name, value in changed(projected, decision.source_values).items()
                if name in contested}
        if back:
            await self.sides[loser].write(table_map, link, projected, back)
        link.written_back(event, winner_values={**side_values(table_map, winner, current),
                                                **canon_all(decision.forward)},
                          loser_values={**decision.source_values, **canon_all(back)},
                          won=table_map.counterparts(winner, decision.forward))
        await self.links.save(link)
        done = [f"the later {side_name(winner)} version was written back to {side_name(loser)}: "
                f"{', '.join(sorted(back))}" if back else f"{side_name(loser)} already holds that version"]
        if decision.forward:
            done.append(f"this change's other columns were written to {side_name(winner)}: "
                        f"{', '.join(sorted(decision.forward))}")
        outcome: ResultOutcome = "applied" if back or decision.forward else "skipped"
        return Result(outcome, "; ".join([decision.reason, *done]), decision.key_text)

    async def _delete(self, table_map: TableMap, event: ChangeEvent, link: Link | None, decision: Delete) -> Result:
        gone = await self.sides[decision.target].delete(table_map, link, decision.key)
        link = link or Link(map=table_map.name, key=decision.key)
        link.tombstoned(event)
        await self.links.save(link)
        return Result("applied" if gone else "skipped", decision.reason(gone=gone), decision.key_text)

    # -- reads ----------------------------------------------------------------------------------
    async def _source_record(self, table_map: TableMap, event: ChangeEvent, *,
                             online: bool = False) -> tuple[dict[str, Any] | None, Link | None]:
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
        needed = table_map.dataverse_columns_to_send()
        # Images registered by deployment carry every needed column; anything short of that is re-read. So is
        # an image older than the engine's last write of the record (a parked change, a late webhook): it
        # shows columns the engine has since written as they were, which would pass for changes.
        stale = link is not None and link.updated_at is not None and link.updated_at > event.occurred_at
        short = event.operation == "refetch" or (event.operation != "create" and not needed <= record.keys())
        if online:
            # Inside the save the image is the newest version there is, and nothing it lacks can be read (the
            # read would wait on the save): without the post image deployment registers, it is not enough.
            if event.operation == "refetch" or (event.operation != "create" and event.partial):
                raise NotOnline(f"map {table_map.name!r}: the synchronous step sent no post image")
        elif short or stale:
            return await self.dataverse.read(table_map, event.record_id), link
        if event.operation == "create" or online:
            # A Create carries every column the caller set, and an image every column that is not empty
            # (deployment registers the columns the map needs); the others are empty.
            record = {**{name: None for name in needed - record.keys()}, **record}
        return await self.dataverse.resolve(table_map, record), link

    def _ours(self, event: ChangeEvent) -> bool:
        return bool(self.engine_user) and (event.initiated_by or "").strip("{}").lower() == self.engine_user

    async def _deleted_key(self, table_map: TableMap,
                           event: ChangeEvent) -> tuple[dict[str, Any] | None, Link | None]:
        """What names a deleted record: its link by Dataverse row id, else the key-bearing pre image."""
        if event.source == "fno":
            return {**(event.pre or {}), **event.keys}, None
        link = await self.links.find(table_map.name, "dataverse", event.record_id) if event.record_id else None
        if link is not None:
            return None, link
        return await self.dataverse.resolve(table_map, event.pre or {}), None
