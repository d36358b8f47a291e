"""Ingest: route parsed change events to the maps they feed and put them on the changes queue.

One queue message per (event, enabled map that syncs something out of the event's side). The
message id is stable per event and map, so a redelivered webhook or F&O retry is dropped by the
queue's duplicate detection; the session id is map + record, so apply sees one record's changes
in order. Routing is done for every event before anything is sent: a payload is either wholly
queued or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.events.errors import PayloadError
from core.events.model import ChangeEvent, Skipped
from core.maps import MapSet, MapValueError, TableMap, encode_key, record_key
from core.store.queues import QueuedChange

MAX_ID = 128  # Service Bus limit on MessageId and SessionId


class ChangeSender(Protocol):
    async def send(self, changes: list[QueuedChange]) -> None: ...


@dataclass(frozen=True)
class Routing:
    changes: list[QueuedChange] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    skipped: list[Skipped]


def route(event: ChangeEvent, maps: MapSet) -> Routing:
    """The queue messages for one event; entities no enabled map syncs from this side are skipped.

    Raises PayloadError when an F&O event lacks what its map's key needs.
    """
    direction: Literal["to_fno", "to_dataverse"]
    if event.source == "dataverse":
        candidates, direction = maps.for_dataverse_table(event.entity), "to_fno"
    else:
        candidates, direction = maps.for_fno_entity(event.entity), "to_dataverse"
    targets = [m for m in candidates if m.enabled and (m.fields_for(direction) or m.lookups_for(direction))]
    if not targets:
        return Routing(skipped=[Skipped(entity=event.entity, reason=f"no enabled map covers {event.entity}",
                                        event_id=event.event_id)])
    changes = []
    for table_map in targets:
        copy = event.model_copy(update={"map": table_map.name})
        changes.append(QueuedChange(event=copy, session_id=session_id(copy, table_map),
                                    message_id=message_id(event.event_id, table_map.name)))
    return Routing(changes=changes)


def message_id(event_id: str, map_name: str) -> str:
    """`<event id>|<map>`, at most 128 characters."""
    return capped(f"{event_id}|{map_name}")


def capped(text: str) -> str:
    """`text` if it fits a Service Bus id, else its head and the hash of all of it (still stable)."""
    if len(text) <= MAX_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text[: MAX_ID - len(digest) - 1] + "~" + digest


def session_id(event: ChangeEvent, table_map: TableMap) -> str:
    """Map + record: the Dataverse row id, or the canonical key of the F&O record."""
    if event.source == "dataverse":
        if not event.record_id:
            raise PayloadError("PrimaryEntityId", "a Dataverse event needs the row id")
        return capped(f"{table_map.name}|dv|{event.record_id}")
    try:
        key = record_key(table_map, "fno", event.keys)
    except MapValueError as error:
        raise PayloadError("keys", str(error)) from None
    return capped(f"{table_map.name}|fno|{encode_key(key)}")


def route_all(events: Iterable[ChangeEvent], maps: MapSet) -> Routing:
    changes: list[QueuedChange] = []
    skipped: list[Skipped] = []
    for event in events:
        routing = route(event, maps)
        changes += routing.changes
        skipped += routing.skipped
    return Routing(changes, skipped)


async def ingest(events: Sequence[ChangeEvent], maps: MapSet, queue: ChangeSender) -> IngestResult:
    """Route every event, then send all messages in one batched call; nothing is sent if routing fails."""
    routing = route_all(events, maps)
    await queue.send(routing.changes)
    return IngestResult(accepted=len(routing.changes), skipped=routing.skipped)
