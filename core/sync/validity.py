"""Validity dates: a date-effective row is sent again when its window opens or closes, without anyone touching it.

A map with a `validity` (core.maps.validity) sends the row's primary flag to Dataverse as "primary now". That
projection is right whenever the row is applied, but a row nobody edits is never applied again: a future-dated
address would stay "not primary" past its date, and the address it replaces "primary". So on a timer, for each
enabled map with a `validity` that sends to Dataverse, the F&O rows whose valid-from or valid-to fell between the
last run and now (`boundary_filter`, one query per map, every page) are sent down the normal path (routed and
queued as ingest does) as re-reads (`refetch`) with no initiating user; apply then projects "primary now" again.

Each row is one event per crossing: its id is stable per row and crossing time, so the broker's duplicate
detection drops a repeat (a run that queued but failed to move its checkpoint). The checkpoint (`validity|<map>`
in the sweeps table, core.store.sweeps) is in the engine's clock, injected as `clock`; the first run sets it to now
(what crossed before the engine first ran is initial sync's business). A map whose query or send fails keeps its
checkpoint: the next run reads the same interval again. What is sent is in the activity log (outcome `retrying`,
reason `validity: <row> became valid|stopped being valid at <time>`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.events.model import ChangeEvent
from core.maps import MapSet, MapValueError, TableMap
from core.maps.validity import boundary_filter, window
from core.sync.decide import record_label
from core.sync.domain import ActivityEntry
from core.sync.ingest import ChangeSender, known_order_keys, route_all
from core.sync.sweep import ActivitySink, Checkpoint, Checkpoints, Links, Query, SweepReport, odata_time

log = logging.getLogger("core.sync.validity")


def validity_source(map_name: str) -> str:
    return f"validity|{map_name}"


@dataclass
class Crossing:
    """A row whose window opened or closed in the interval: its change event and what crossed."""

    event: ChangeEvent
    how: str


# The sweep's figures, with `found` per map (validity|<map>) instead of per source.
ValidityReport = SweepReport


def validity_maps(maps: MapSet) -> list[TableMap]:
    """The enabled maps with a `validity` that send F&O rows to Dataverse."""
    return [m for m in maps.values() if m.enabled and m.validity is not None and m.sends_to("dataverse")]


def crossing(table_map: TableMap, row: Mapping[str, Any], since: datetime, until: datetime) -> Crossing | str | None:
    """The change event of a row whose window opened or closed in (since, until] (the later edge when both did);
    None when neither did, a problem text when the row cannot be sent."""
    validity = table_map.validity
    assert validity is not None
    try:
        start, end = window(validity, row)
    except MapValueError as error:
        return f"{table_map.name}: a row with an unreadable validity ({error})"
    edges = [
        (edge, how)
        for edge, how in ((start, "became valid"), (end, "stopped being valid"))
        if edge is not None and since < edge <= until
    ]
    if not edges:
        return None
    at, how = max(edges, key=lambda edge: edge[0])
    keys: dict[str, Any] = {name: row.get(name) for name in table_map.key_fields("fno")}
    company = None
    if table_map.company is not None:
        code = row.get(table_map.company.fno)
        if isinstance(code, str) and code:
            keys[table_map.company.fno] = code.lower()
            company = code.upper()
    if any(v is None or v == "" for v in keys.values()):
        return f"{table_map.name}: a row without its key fields"
    identity = json.dumps([table_map.fno.entity_set, *(str(v).upper() for v in keys.values())])
    # Stable per row and crossing: the same crossing found twice is one message (the broker drops the second).
    event_id = "fno-validity:" + hashlib.sha256(f"{identity}|{odata_time(at)}".encode()).hexdigest()[:40]
    event = ChangeEvent(
        event_id=event_id,
        source="fno",
        entity=table_map.fno.entity_set,
        operation="refetch",
        company=company,
        keys=keys,
        partial=True,
        occurred_at=at,
        initiated_by=None,
        map=table_map.name,  # this map's key: routing must not hand it to another map of the entity
    )
    return Crossing(event, f"{how} at {odata_time(at)}")


class ValiditySweep:
    def __init__(
        self,
        maps: MapSet,
        checkpoints: Checkpoints,
        queue: ChangeSender,
        activity: ActivitySink,
        *,
        fno: Query,
        links: Links | None = None,
        buckets: int = 16,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.maps = maps
        self.checkpoints = checkpoints
        self.queue = queue
        self.activity = activity
        self.fno = fno
        self.links = links
        self.buckets = buckets
        self.clock = clock

    async def run(self) -> ValidityReport:
        """Every map with a validity; one failing (F&O down, the queue refusing) is reported and the others go on."""
        report = ValidityReport()
        until = self.clock().astimezone(UTC)
        for table_map in validity_maps(self.maps):
            source = validity_source(table_map.name)
            try:
                await self._map(report, table_map, source, until)
            except Exception as error:  # the checkpoint stays: the next run reads the same interval again
                report.problems.append(f"{source}: {type(error).__name__}: {str(error)[:300]}")
                log.warning("validity: %s not run: %s", source, error)
        return report

    async def _map(self, report: ValidityReport, table_map: TableMap, source: str, until: datetime) -> None:
        checkpoint = await self.checkpoints.get(source)
        if checkpoint is None:
            await self.checkpoints.put(source, Checkpoint(since=until))
            report.found[table_map.name] = 0
            return
        since = checkpoint.since
        if until <= since:
            report.found[table_map.name] = 0
            return
        validity = table_map.validity
        assert validity is not None
        fields = [
            *table_map.key_fields("fno"),
            *([table_map.company.fno] if table_map.company else []),
            validity.valid_from,
            *([validity.valid_to] if validity.valid_to else []),
        ]
        rows = await self.fno.query(
            table_map.fno.entity_set, filter=boundary_filter(table_map, since, until), select=[*dict.fromkeys(fields)]
        )
        found: list[Crossing] = []
        for row in rows:
            result = crossing(table_map, row, since, until)
            if isinstance(result, str):
                report.problems.append(f"{source}: {result}")
            elif result is not None:
                found.append(result)
        report.found[table_map.name] = len(found)
        if found:
            await self._send(report, found)
            log.info("validity: %s: %d row(s) crossed their validity, sent again", table_map.name, len(found))
        await self.checkpoints.put(source, Checkpoint(since=until))

    async def _send(self, report: ValidityReport, found: list[Crossing]) -> None:
        events = [f.event for f in found]
        how = {f.event.event_id: f.how for f in found}
        known = await known_order_keys(events, self.maps, self.links)
        routing = route_all(events, self.maps, buckets=self.buckets, known=known)
        await self.queue.send(routing.changes)  # raises: the checkpoint stays, the next run sends them again
        report.queued += len(routing.changes)
        report.skipped += len(routing.skipped)
        entries = []
        for change in routing.changes:
            label = record_label(change.event, self.maps)
            entries.append(
                ActivityEntry(
                    map=change.event.map or "unmapped",
                    key=label,
                    source=change.event.source,
                    operation=change.event.operation,
                    outcome="retrying",
                    reason=f"validity: {label} {how[change.event.event_id]}",
                    event_id=change.event.event_id,
                    message_id=change.message_id,
                )
            )
        try:
            await self.activity.record(entries)
        except Exception as error:  # the changes are queued; the log line says what the activity log lacks
            log.warning("validity: %d change(s) sent but not in the activity log (%s)", len(entries), error)
