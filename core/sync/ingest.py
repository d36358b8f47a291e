"""Ingest: route parsed change events to the maps they feed and put them on the changes queue.

One queue message per (event, enabled map that syncs something out of the event's side). The
message id is stable per event and map, so a redelivered webhook or F&O retry is dropped by the
queue's duplicate detection; the session id is map + record, so apply sees one record's changes
in order. Routing is done for every event before anything is sent: a payload is either wholly
queued or not at all.

Sessions are buckets, not records: `<map>|b<n>` with n a stable hash of the record's integration key
(company left out: a Dataverse event names its company by row id) modulo `buckets`. Both sides'
changes of one record land in one session, so they are applied in order with each other, and the
apply function takes many changes of a session per invocation. A Dataverse event without its key
columns (a delete without pre image, a trimmed body) is placed through the link index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events.errors import PayloadError
from core.events.model import ChangeEvent, Skipped
from core.maps import MapSet, MapValueError, TableMap, encode_key, order_key
from core.store.queues import QueuedChange

MAX_ID = 128  # Service Bus limit on MessageId and SessionId
DEFAULT_BUCKETS = 16


class LinkFinder(Protocol):
    """The link index: a Dataverse row id -> the link (whose key names the record)."""

    async def find(self, map: str, side: str, record_id: str) -> Any: ...


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


def route(event: ChangeEvent, maps: MapSet, *, buckets: int = DEFAULT_BUCKETS,
          known: dict[tuple[str, str], tuple[str, ...]] | None = None) -> Routing:
    """The queue messages for one event; entities no enabled map syncs from this side are skipped.
    `known` holds order keys found through the link index for Dataverse rows, by (map, row id).

    Raises PayloadError when an F&O event lacks what its map's key needs.
    """
    targets = target_maps(event, maps)
    if not targets:
        reason = (f"map {event.map!r} of {event.entity} is not enabled or syncs nothing from {event.source}"
                  if event.map is not None else f"no enabled map covers {event.entity}")
        return Routing(skipped=[Skipped(entity=event.entity, reason=reason, event_id=event.event_id)])
    changes = []
    for table_map in targets:
        copy = event.model_copy(update={"map": table_map.name})
        found = (known or {}).get((table_map.name, (event.record_id or "").lower()))
        changes.append(QueuedChange(event=copy, session_id=session_id(copy, table_map, buckets, found),
                                    message_id=message_id(event.event_id, table_map.name)))
    return Routing(changes=changes)


def target_maps(event: ChangeEvent, maps: MapSet) -> list[TableMap]:
    """The enabled maps that sync something out of the event's side for its entity; only its own map for an
    event the parser addressed to one (F&O events are read per map: core.events.fno)."""
    if event.map is not None:
        own = maps.get(event.map)
        return [own] if own is not None and own.enabled and own.sends_to(
            "fno" if event.source == "dataverse" else "dataverse") else []
    if event.source == "dataverse":
        return [m for m in maps.for_dataverse_table(event.entity) if m.enabled and m.sends_to("fno")]
    return [m for m in maps.for_fno_entity(event.entity) if m.enabled and m.sends_to("dataverse")]


def message_id(event_id: str, map_name: str) -> str:
    """`<event id>|<map>`, at most 128 characters."""
    return capped(f"{event_id}|{map_name}")


def capped(text: str) -> str:
    """`text` if it fits a Service Bus id, else its head and the hash of all of it (still stable)."""
    if len(text) <= MAX_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text[: MAX_ID - len(digest) - 1] + "~" + digest


def event_order_key(event: ChangeEvent, table_map: TableMap) -> tuple[str, ...] | None:
    """The record's order key (core.maps.order_key) from what the event carries, or None."""
    record = {**(event.pre or {}), **event.keys, **event.values} if event.source == "dataverse" else \
        {**(event.pre or {}), **event.keys}
    try:
        return order_key(table_map, event.source, record)
    except MapValueError:
        return None


def bucket_of(map_name: str, order: tuple[str, ...], buckets: int) -> int:
    # Case-blind: F&O compares keys without case, so `us-900` and `US-900` are one record there.
    digest = hashlib.sha256(f"{map_name}|{encode_key(order)}".upper().encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(1, buckets)


def session_of_key(table_map: TableMap, key: tuple[str, ...], buckets: int = DEFAULT_BUCKETS) -> str:
    """The session of a record known by its canonical key (a change made by a run, resubmitted later)."""
    return capped(f"{table_map.name}|b{bucket_of(table_map.name, table_map.without_company(key), buckets)}")


def session_id(event: ChangeEvent, table_map: TableMap, buckets: int = DEFAULT_BUCKETS,
               found: tuple[str, ...] | None = None) -> str:
    """`<map>|b<n>`: the session bucket of the record's order key (`found` through the link index when
    the event lacks it). A Dataverse row never synced and without its key falls back to its row id."""
    order = event_order_key(event, table_map) or found
    if order is None:
        if event.source == "fno":
            try:
                order_key(table_map, "fno", {**(event.pre or {}), **event.keys})
            except MapValueError as error:
                raise PayloadError("keys", str(error)) from None
        if not event.record_id:
            raise PayloadError("PrimaryEntityId", "a Dataverse event needs the row id")
        order = ("@id", event.record_id.lower())
    return capped(f"{table_map.name}|b{bucket_of(table_map.name, order, buckets)}")


async def known_order_keys(events: Iterable[ChangeEvent], maps: MapSet,
                           links: LinkFinder | None) -> dict[tuple[str, str], tuple[str, ...]]:
    """Order keys of Dataverse rows whose events lack the key columns, from the link index."""
    found: dict[tuple[str, str], tuple[str, ...]] = {}
    if links is None:
        return found
    for event in events:
        if event.source != "dataverse" or not event.record_id:
            continue
        for table_map in target_maps(event, maps):
            if event_order_key(event, table_map) is not None:
                continue
            link = await links.find(table_map.name, "dataverse", event.record_id)
            if link is not None:
                found[(table_map.name, event.record_id.lower())] = table_map.without_company(tuple(link.key))
    return found


def route_all(events: Iterable[ChangeEvent], maps: MapSet, *, buckets: int = DEFAULT_BUCKETS,
              known: dict[tuple[str, str], tuple[str, ...]] | None = None) -> Routing:
    changes: list[QueuedChange] = []
    skipped: list[Skipped] = []
    for event in events:
        routing = route(event, maps, buckets=buckets, known=known)
        changes += routing.changes
        skipped += routing.skipped
    return Routing(changes, skipped)


async def ingest(events: Sequence[ChangeEvent], maps: MapSet, queue: ChangeSender, *,
                 buckets: int = DEFAULT_BUCKETS, links: LinkFinder | None = None) -> IngestResult:
    """Route every event, then send all messages in one batched call; nothing is sent if routing fails."""
    known = await known_order_keys(events, maps, links)
    routing = route_all(events, maps, buckets=buckets, known=known)
    await queue.send(routing.changes)
    return IngestResult(accepted=len(routing.changes), skipped=routing.skipped)
