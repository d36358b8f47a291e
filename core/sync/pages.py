"""One page of an initial sync or a reconciliation: compare its rows with the other side, then write.

The rows of a page are read from the run's source side; the same records are read from the target in
bulk (by key, a few queries a page). Each row then meets the one sync rule (core.sync.decide) with a
link made from what the target holds now ("matched"), so a row the target already holds is linked and
not written, a row that differs is written with just its differing columns, and a missing row is
created. Writes of a page run side by side and the connectors gather them into `$batch` requests;
links are saved in Table transactions. A row's failure is its own: it goes to the error log with the
run id and the rest of the page carries on.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from core.connectors.errors import ConnectorError
from core.events.model import ChangeEvent
from core.maps import KeyRef, TableMap, encode_key, evaluate
from core.maps.model import Side
from core.sync.compare import canon_all, side_values
from core.sync.decide import Remember, Skip, Write, decide, other, side_name
from core.sync.domain import ErrorEntry, Link
from core.sync.errors import category_of, error_text
from core.sync.ingest import DEFAULT_BUCKETS, session_of_key
from core.sync.runs import Pass, RowNote, Run, Tally
from core.sync.sides import FnoSide, SidePort, SourceRow, Written

log = logging.getLogger(__name__)
SAMPLE_ROWS = 5  # a dry run lists this many rows it would write, per page
YIELD_EVERY = 50  # rows judged between two turns of the event loop


class LinkWriter(Protocol):
    async def put_many(self, links: Sequence[Link]) -> None: ...


class ErrorRecorder(Protocol):
    async def record(self, entry: ErrorEntry) -> ErrorEntry: ...


@dataclass
class _Pending:
    row: SourceRow
    target: SourceRow | None
    event: ChangeEvent
    link: Link | None
    decision: Write


@dataclass
class PageResult:
    tally: Tally = field(default_factory=Tally)
    notes: list[RowNote] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


class Gate:
    """How many writes run at once, adapted to the target: halved when it throttles, grown back slowly
    (additive increase, multiplicative decrease), so service protection slows a run instead of failing it."""

    def __init__(self, start: int = 64, *, low: int = 4, high: int = 256) -> None:
        self.limit = start
        self.low, self.high = low, high
        self._active = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < self.limit)
            self._active += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self._active -= 1
            self._changed.notify_all()

    def throttled(self) -> None:
        self.limit = max(self.low, self.limit // 2)

    def went_well(self) -> None:
        self.limit = min(self.high, self.limit + 1)


class PageWork:
    """The rows of one page: the run, the map (deferred lookups left out in the rows pass), its sides."""

    def __init__(self, run: Run, table_map: TableMap, pass_: Pass, sides: Mapping[Side, SidePort], *,
                 maps: Mapping[str, TableMap], errors: ErrorRecorder, gate: Gate, throttled: ThrottleProbe,
                 links: LinkWriter | None = None, buckets: int = DEFAULT_BUCKETS) -> None:
        self.run = run
        self.map = table_map
        self.pass_ = pass_
        self.sides = sides
        self.maps = maps
        self.errors = errors
        self.gate = gate
        self.throttled = throttled
        self.links = links
        self.buckets = buckets
        self.source: Side = run.sources[table_map.name]
        self.target: Side = other(self.source)

    async def rows(self, rows: list[SourceRow], *, filtered: bool) -> PageResult:
        """The rows and patch passes: the source's rows onto the target."""
        out = PageResult()
        if self.pass_ == "rows":
            out.tally.read = len(rows)
        keyed: list[SourceRow] = []
        node = self.map.source_filter(self.source)
        for row in rows:
            if row.key is None:
                await self._failed(out, row, ValueError(row.problem or "the record has no integration key"))
            elif not filtered and node is not None and not evaluate(node, row.record):
                out.tally.skipped += 1
            else:
                keyed.append(row)
        targets = await self.sides[self.target].read_keys(self.map, [r.key for r in keyed if r.key is not None])
        writes: list[_Pending] = []
        for index, row in enumerate(keyed):
            assert row.key is not None
            pending = await self._row(out, row, targets.get(row.key))
            if pending is not None:
                writes.append(pending)
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # judging is CPU only: let the host's other work (HTTP, leases) in
        early = self.target == "fno" and self.links is not None and bool(writes)
        if early:
            # F&O cannot be told to leave our writes out of its events (Dataverse can: the bypass header), and
            # its events can be applied before this page ends: each record's link is saved as it will be
            # after the write, first, so the write's echo is recognised; a failed write puts it back.
            assert self.links is not None
            await self.links.put_many([self._after(w) for w in writes])
        creates = [w for w in writes if not w.decision.update]
        await asyncio.gather(self._create(out, creates, linked_already=early),
                             *(self._write(out, w, linked_already=early) for w in writes if w.decision.update))
        return out

    async def orphans(self, rows: list[SourceRow]) -> PageResult:
        """The orphans pass: rows of the target that the source lacks (reported; removed in a repair)."""
        out = PageResult()
        keyed = [r for r in rows if r.key is not None]
        present = await self.sides[self.source].read_keys(self.map, [r.key for r in keyed if r.key is not None])
        node = self.map.source_filter(self.source)
        for row in keyed:
            assert row.key is not None
            found = present.get(row.key)
            if found is not None and (node is None or evaluate(node, found.record)):
                continue
            out.tally.missing_on_source += 1
            out.notes.append(RowNote(self.map.name, row.key, "missing_on_source",
                                     detail=f"in {side_name(self.target)}, not in {side_name(self.source)}"
                                     + (" (filtered out by the map)" if found is not None else "")))
            if self.run.writes and self.run.kind == "repair":
                link = Link(map=self.map.name, key=row.key, dataverse_id=row.row_id, fno_key=row.fno_key)
                try:
                    async with self.gate:
                        await self.sides[self.target].delete(self.map, link, row.key)
                    out.tally.deleted += 1
                    link.tombstoned(self._event(row, self.target))
                    out.links.append(link)
                except Exception as error:  # one row's failure is its own
                    await self._failed(out, row, error, side=self.target)
        return out

    async def _row(self, out: PageResult, row: SourceRow, target: SourceRow | None) -> _Pending | None:
        """Judge a row: count and note what it is; a write to do comes back (done after the page's links)."""
        assert row.key is not None
        event = self._event(row, self.source)
        link = self._matched(row.key, target) if target is not None else None
        try:
            decision = decide(self.map, event, row.record, link, ours=False, maps=self.maps)
        except Exception as error:  # a value the map cannot carry: this row's problem only
            await self._failed(out, row, error)
            return None
        if isinstance(decision, Skip):
            out.tally.skipped += 1
            return None
        if isinstance(decision, Remember):
            out.tally.matched += 1
            if link is not None and self.run.writes:
                link.remembered(event, decision.source_values, echo=False)
                out.links.append(link)
            return None
        if not isinstance(decision, Write):  # WriteBack and Delete need a link with history; a run makes none
            out.tally.skipped += 1
            return None
        columns = tuple(sorted(decision.changes))
        reporting = self.pass_ == "rows"  # the patch pass writes the deferred lookups: expected, not drift
        if decision.update:
            keep = self.run.kind == "compare" or decision.check_primary
            if reporting:
                out.tally.differs += 1
                why = None if self.run.kind == "compare" else (
                    f"kept: {side_name(self.target)} is the primary side of the map" if keep
                    else f"written from {side_name(self.source)}")
                out.notes.append(RowNote(self.map.name, row.key, "differs", columns, why))
            if keep:
                if decision.check_primary and link is not None and self.run.writes:
                    link.remembered(event, decision.source_values, echo=False)
                    out.links.append(link)
                return None
        else:
            if reporting:
                out.tally.missing_on_target += 1
                if self.run.kind != "initial":  # an initial sync creates most rows: listing them says nothing
                    out.notes.append(RowNote(self.map.name, row.key, "missing_on_target"))
            if self.run.kind == "compare":
                return None
        if self.run.dry_run:
            out.tally.written += 1
            if sum(1 for n in out.notes if n.outcome == "sample") < SAMPLE_ROWS:
                out.notes.append(RowNote(self.map.name, row.key, "sample", columns,
                                         "update" if decision.update else "create",
                                         values=canon_all(decision.changes)))
            return None
        return _Pending(row, target, event, link, decision)

    def _after(self, pending: _Pending, written: Written | None = None) -> Link:
        """The record's link once the write is done."""
        row, target, event, decision = pending.row, pending.target, pending.event, pending.decision
        link = copy.deepcopy(pending.link) if pending.link is not None else Link(map=self.map.name, key=decision.key)
        fno_key: dict[str, Any] | None
        if self.source == "dataverse":
            dataverse_id = row.row_id
            fno_key = (written.fno_key if written else None) or (target.fno_key if target else None) or \
                FnoSide.key(self.map, {**(link.fno_key or {}), **decision.projected})
        else:
            dataverse_id, fno_key = (written.record_id if written else None), row.fno_key
        link.wrote(event, target_values=canon_all(decision.projected), source_values=decision.source_values,
                   dataverse_id=dataverse_id, fno_key=fno_key)
        return link

    async def _write(self, out: PageResult, pending: _Pending, *, linked_already: bool) -> None:
        decision = pending.decision
        try:
            async with self.gate:
                before = self.throttled()
                written = await self.sides[self.target].write(self.map, pending.link, decision.projected,
                                                              decision.changes, recreate=True)
                self._adapt(before)
        except Exception as error:
            await self._settle(out, pending, error, linked_already=linked_already)
            return
        await self._settle(out, pending, written, linked_already=linked_already)

    async def _create(self, out: PageResult, pending: list[_Pending], *, linked_already: bool) -> None:
        """The page's missing records, created in bulk (CreateMultiple in Dataverse)."""
        if not pending:
            return
        try:
            async with self.gate:
                before = self.throttled()
                results = await self.sides[self.target].create_page(self.map, [p.decision.projected for p in pending])
                self._adapt(before)
        except Exception as error:  # the side answers per row; this is the side itself failing
            results = [error] * len(pending)
        for each, result in zip(pending, results, strict=True):
            await self._settle(out, each, result, linked_already=linked_already)

    def _adapt(self, throttled_before: int) -> None:
        if self.throttled() > throttled_before:
            self.gate.throttled()
        else:
            self.gate.went_well()

    async def _settle(self, out: PageResult, pending: _Pending, result: Written | Exception, *,
                      linked_already: bool) -> None:
        if isinstance(result, Exception):
            await self._failed(out, pending.row, result)
            if linked_already:  # back to what the target holds: as matched, or nothing (a tombstone)
                out.links.append(pending.link if pending.link is not None else
                                 Link(map=self.map.name, key=pending.decision.key, state="deleted"))
            return
        out.tally.written += 1
        if not linked_already:
            out.links.append(self._after(pending, result))

    def _matched(self, key: tuple[str, ...], target: SourceRow) -> Link:
        """A link from what the target holds now: the rule then writes only what differs."""
        return Link(map=self.map.name, key=key, dataverse_id=target.row_id, fno_key=target.fno_key,
                    values={self.target: side_values(self.map, self.target, target.record)})

    def _event(self, row: SourceRow, side: Side) -> ChangeEvent:
        """The row as a change event: what the rule judges, and what a resubmit from the error log applies."""
        keys = row.fno_key if side == "fno" and row.fno_key else {}
        values = {k: v for k, v in row.record.items() if k not in keys}
        return ChangeEvent(event_id=f"{self.run.id}|{encode_key(row.key or ('?',))}", map=self.map.name,
                           source=side, entity=self.map.fno.entity_set if side == "fno" else self.map.dataverse.table,
                           operation="update", record_id=row.row_id, keys=keys, values=_wire(values),
                           partial=False, version=row.version, occurred_at=row.modified_at or datetime.now(UTC))

    async def _failed(self, out: PageResult, row: SourceRow, error: BaseException, *, side: Side | None = None) -> None:
        out.tally.failed += 1
        key = row.key or (f"{side_name(self.source)} row {row.row_id or row.fno_key or '?'}",)
        text = error_text(error)
        out.notes.append(RowNote(self.map.name, key, "failed", detail=text))
        now = datetime.now(UTC)
        try:
            change = self._event(row, side or self.source).to_json()
        except Exception:  # the row's values are what failed: keep what can be kept
            change = ""
        status = error.status if isinstance(error, ConnectorError) else None
        code = error.code if isinstance(error, ConnectorError) else None
        await self.errors.record(ErrorEntry(
            id=f"{self.run.id}|{self.map.name}|{encode_key(key)}", map=self.map.name, key=encode_key(key),
            source=side or self.source, operation="initial sync" if self.run.kind == "initial" else "repair",
            category=category_of(error), text=f"run {self.run.id}: {text}", attempts=1, change=change,
            session_id=session_of_key(self.map, row.key, self.buckets) if row.key else "", first_at=now,
            last_at=now, target_status=status, target_code=code or None,
            run_id=self.run.id))


class ThrottleProbe(Protocol):
    def __call__(self) -> int: ...


def _wire(values: dict[str, Any]) -> dict[str, Any]:
    """KeyRefs of resolved lookups travel as their Dataverse form in events: keep them out of the body
    (the record itself is judged, not the event's values) and keep everything else as read."""
    return {k: v for k, v in values.items() if not isinstance(v, KeyRef)}
