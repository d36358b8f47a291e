"""Map modes and parked changes in Table Storage.

Table `mapmodes`: PartitionKey = "mode", RowKey = map name: the mode, the move that set it, catch-up
  progress. No row: the map runs (core.sync.modes).
Table `maptransitions`: PartitionKey = map name, RowKey = inverted time + a random tail (newest first):
  every move, who made it and why.
Table `parked`: PartitionKey = map name, RowKey = the record and the side its change came from: the
  latest change of that record from that side while the map did not run, with how many it stands for.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from core.events.model import ChangeEvent
from core.maps.keys import decode_key, encode_key
from core.store.tables import Tables
from core.sync.modes import CatchUp, MapMode, MapState, Transition

_PARTITION = "mode"
_TRANSACTION = 100  # operations a Table transaction takes
_MAX_TICKS = 10**19


class ModeChanged(Exception):
    """The map's mode row changed since it was read: re-read and decide again."""


def _utc(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value.timestamp(), UTC)


def _text(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class ModeStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def get(self, map_name: str) -> MapState:
        table = await self.tables.table("mapmodes")
        try:
            row = await table.get_entity(_PARTITION, map_name)
        except ResourceNotFoundError:
            return MapState(map=map_name)
        return _state(row)

    async def all(self) -> dict[str, MapState]:
        table = await self.tables.table("mapmodes")
        return {row["RowKey"]: _state(row)
                async for row in table.query_entities(f"PartitionKey eq '{_PARTITION}'")}

    async def save(self, state: MapState, transition: Transition | None = None) -> MapState:
        """Save a state read earlier, guarded by its etag (ModeChanged when someone moved the map in
        between), and record the transition."""
        table = await self.tables.table("mapmodes")
        entity = {"PartitionKey": _PARTITION, "RowKey": state.map, "Mode": state.mode, "Since": state.since,
                  "By": state.by, "Reason": state.reason[:30_000], "CatchUp": json.dumps({
                      "parked": state.catch_up.parked, "sent": state.catch_up.sent,
                      "started_at": _text(state.catch_up.started_at),
                      "finished_at": _text(state.catch_up.finished_at)})}
        try:
            if state.etag is None:
                meta = await table.create_entity(entity)
            else:
                meta = await table.update_entity(entity, mode=UpdateMode.REPLACE, etag=state.etag,
                                                 match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            raise ModeChanged(f"map {state.map!r} was moved by someone else meanwhile") from None
        if transition is not None:
            history = await self.tables.table("maptransitions")
            ticks = _MAX_TICKS - int(transition.at.timestamp() * 1_000_000)
            await history.create_entity({
                "PartitionKey": transition.map, "RowKey": f"{ticks:020d}-{uuid.uuid4().hex[:6]}",
                "From": transition.from_mode, "To": transition.to_mode, "At": transition.at, "By": transition.by,
                "Reason": transition.reason[:30_000]})
        return MapState(state.map, state.mode, state.since, state.by, state.reason, state.catch_up,
                        etag=meta["etag"])

    async def history(self, map_name: str, limit: int = 50) -> list[Transition]:
        table = await self.tables.table("maptransitions")
        out: list[Transition] = []
        partition = map_name.replace("'", "''")
        async for row in table.query_entities(f"PartitionKey eq '{partition}'", results_per_page=limit):
            out.append(Transition(map_name, row["From"], row["To"], _utc(row["At"]) or datetime.now(UTC),
                                  row.get("By") or "", row.get("Reason") or ""))
            if len(out) >= limit:
                break
        return out


def _state(row: Any) -> MapState:
    progress = json.loads(row.get("CatchUp") or "{}")
    return MapState(map=row["RowKey"], mode=cast("MapMode", row["Mode"]), since=_utc(row.get("Since")),
                    by=row.get("By") or "", reason=row.get("Reason") or "",
                    catch_up=CatchUp(parked=int(progress.get("parked") or 0), sent=int(progress.get("sent") or 0),
                                     started_at=_when(progress.get("started_at")),
                                     finished_at=_when(progress.get("finished_at"))),
                    etag=row.metadata["etag"])


@dataclass(frozen=True)
class ParkedChange:
    """The latest change of one record from one side while its map did not run."""

    map: str
    record: str  # the record's lane and the change's side and identity: the row key
    event: ChangeEvent
    session_id: str
    origin: str  # the message id of the kept change: its name in the activity and error logs
    changes: int  # changes this one stands for (itself and the earlier ones it replaced)
    first_at: datetime
    etag: str | None = None


def parked_record(lane: str, event: ChangeEvent) -> str:
    """The parked row of a change: its record (lane) and which side's change, so both sides' latest changes
    of a record are kept (they meet the conflict policy on catch-up, as live)."""
    if event.source == "dataverse":
        ident = (event.record_id or event.event_id).lower()
    else:
        fields = sorted((k.lower(), str(v).lower()) for k, v in {**(event.pre or {}), **event.keys}.items())
        ident = encode_key([f"{name}={value}" for name, value in fields])
    return encode_key([lane, event.source, ident])


class ParkedStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def get(self, map_name: str, record: str) -> ParkedChange | None:
        table = await self.tables.table("parked")
        try:
            return _parked(await table.get_entity(map_name, record))
        except ResourceNotFoundError:
            return None

    async def put(self, change: ParkedChange) -> None:
        """Keep `change` as the record's parked change (it already counts the ones it replaced)."""
        table = await self.tables.table("parked")
        await table.upsert_entity({
            "PartitionKey": change.map, "RowKey": change.record, "Event": change.event.to_json(),
            "Session": change.session_id, "Origin": change.origin, "Changes": change.changes,
            "FirstAt": change.first_at}, mode=UpdateMode.REPLACE)

    async def page(self, map_name: str, size: int) -> list[ParkedChange]:
        """Up to `size` parked changes of a map (in record order)."""
        out: list[ParkedChange] = []
        async for change in self.scan(map_name, page_size=size):
            out.append(change)
            if len(out) >= size:
                break
        return out

    async def scan(self, map_name: str, page_size: int = 1000) -> AsyncIterator[ParkedChange]:
        table = await self.tables.table("parked")
        partition = map_name.replace("'", "''")
        async for row in table.query_entities(f"PartitionKey eq '{partition}'", results_per_page=page_size):
            yield _parked(row)

    async def count(self, map_name: str) -> tuple[int, int]:
        """Parked records of a map, and the changes they stand for."""
        table = await self.tables.table("parked")
        partition = map_name.replace("'", "''")
        records = changes = 0
        async for row in table.query_entities(f"PartitionKey eq '{partition}'", select=["Changes"]):
            records += 1
            changes += int(row.get("Changes") or 1)
        return records, changes

    async def by_source(self, map_name: str) -> dict[str, tuple[int, datetime | None]]:
        """Parked records of a map per side their change came from, and the oldest one's first parking."""
        table = await self.tables.table("parked")
        partition = map_name.replace("'", "''")
        out: dict[str, tuple[int, datetime | None]] = {}
        async for row in table.query_entities(f"PartitionKey eq '{partition}'", select=["RowKey", "FirstAt"]):
            parts = decode_key(row["RowKey"])
            source = parts[1] if len(parts) > 2 else ""
            records, oldest = out.get(source, (0, None))
            first = _utc(row.get("FirstAt"))
            out[source] = (records + 1, first if oldest is None or (first is not None and first < oldest) else oldest)
        return out

    async def remove(self, changes: list[ParkedChange]) -> list[ParkedChange]:
        """Remove parked changes that were sent on; the ones replaced meanwhile by a later change of their
        record are kept (etag) and returned: they go out in a later round."""
        table = await self.tables.table("parked")
        kept: list[ParkedChange] = []
        by_map: dict[str, list[ParkedChange]] = {}
        for change in changes:
            by_map.setdefault(change.map, []).append(change)
        for same_map in by_map.values():
            for start in range(0, len(same_map), _TRANSACTION):
                group = same_map[start:start + _TRANSACTION]
                if len(group) > 1:
                    try:  # one transaction a hundred rows; refused as a whole if any was parked again
                        await table.submit_transaction([
                            ("delete", {"PartitionKey": c.map, "RowKey": c.record},
                             {"etag": c.etag, "match_condition": MatchConditions.IfNotModified}) for c in group])
                        continue
                    except TableTransactionError:
                        pass  # find which, one by one
                for change in group:
                    try:
                        await table.delete_entity(change.map, change.record, etag=change.etag,
                                                  match_condition=MatchConditions.IfNotModified)
                    except ResourceModifiedError:
                        kept.append(change)
                    except ResourceNotFoundError:
                        pass
        return kept


def _parked(row: Any) -> ParkedChange:
    return ParkedChange(map=row["PartitionKey"], record=row["RowKey"], event=ChangeEvent.from_json(row["Event"]),
                        session_id=row.get("Session") or "", origin=row.get("Origin") or "",
                        changes=int(row.get("Changes") or 1), first_at=_utc(row.get("FirstAt")) or datetime.now(UTC),
                        etag=row.metadata["etag"])
