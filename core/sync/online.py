"""Online mode: a Dataverse change written to F&O inside the user's save, as Microsoft's dual-write does.

Deployment registers the webhook steps of a table with an online map as synchronous PostOperation steps
(inside the save's transaction). Their requests arrive here instead of being queued: for each online map
that is running, the change is applied at once through the live-sync applier; when F&O refuses it, the
answer is a refusal carrying F&O's message, Dataverse fails the save and rolls it back, and nothing is
written anywhere. The table's other maps, and online maps that are paused or stopped, go the usual
asynchronous way (queued; apply parks or drops them by mode).

What it costs: the user's save waits for the F&O write (one F&O round trip, plus lookups not cached yet);
a refused or failed write fails the save. A sync step can see changes that later roll back (another
plug-in failing after ours): F&O then holds a value Dataverse does not, until the record changes again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from core.connectors.errors import ConnectorError
from core.events.model import ChangeEvent
from core.maps import MapSet
from core.store.activity import ActivityEntry
from core.sync.apply import Applier
from core.sync.decide import record_label
from core.sync.errors import NotOnline, SyncError, is_transient
from core.sync.ingest import ChangeSender, LinkFinder, known_order_keys, route_all, target_maps
from core.sync.modes import Admission, MapState

log = logging.getLogger(__name__)
RefusalKind = Literal["refused", "unavailable"]


class ModeGate(Protocol):
    async def admission(self, map_name: str, *, from_catch_up: bool) -> tuple[Admission, MapState]: ...


class ActivityRecorder(Protocol):
    async def record(self, entries: list[ActivityEntry]) -> None: ...


class OnlineRefused(Exception):
    """The online write did not happen: the user's Dataverse save must fail with this message. `kind`
    says whether trying the save again can help (F&O unavailable or throttled) or not (F&O refused)."""

    def __init__(self, map_name: str, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.map = map_name
        self.kind = kind
        self.message = message


@dataclass
class OnlineResult:
    applied: list[str] = field(default_factory=list)  # maps written online
    queued: int = 0  # messages sent the asynchronous way


async def sync_online(event: ChangeEvent, maps: MapSet, *, applier: Applier, modes: ModeGate,
                      queue: ChangeSender, activity: ActivityRecorder, links: LinkFinder | None = None,
                      buckets: int = 16, images_current: bool = True) -> OnlineResult:
    """Apply a synchronous step's change to every running online map now, queue the rest. Raises
    OnlineRefused (after recording it) when an online write fails: the caller fails the save.

    An image leaves empty columns out, so a column the map needs and the image lacks is taken as empty. That
    holds only while the registered images are those of the running maps: `images_current` False (maps
    reloaded, deployment still bringing the steps in line) sends every change the asynchronous way."""
    result = OnlineResult()
    targets = target_maps(event, maps)
    now: list[str] = []
    for table_map in targets:
        if not (table_map.online and images_current):
            continue
        if (await modes.admission(table_map.name, from_catch_up=False))[0] == "apply":
            now.append(table_map.name)
    for name in now:
        copy = event.model_copy(update={"map": name})
        try:
            applied = await applier.apply(copy, online=True)
        except NotOnline as why:
            log.info("online: %s goes the asynchronous way: %s", record_label(copy, maps), why)
            continue
        except (SyncError, ConnectorError) as error:
            refusal = _refusal(name, error)
            await _record(activity, _entry(copy, maps, "failed", f"online: {refusal.message}; the Dataverse save "
                                                                 "was refused and rolled back"))
            raise refusal from error
        result.applied.append(name)
        await _record(activity, _entry(copy, maps, applied.outcome, f"online: {applied.reason}", key=applied.key,
                                       target_id=applied.target_id))
    rest = {m.name for m in targets} - set(result.applied)
    if rest:
        known = await known_order_keys([event], maps, links)
        changes = [c for c in route_all([event], maps, buckets=buckets, known=known).changes if c.event.map in rest]
        await queue.send(changes)
        result.queued = len(changes)
    return result


async def _record(activity: ActivityRecorder, entry: ActivityEntry) -> None:
    """The activity log is told; the save's outcome never depends on it being up."""
    try:
        await activity.record([entry])
    except Exception as error:
        log.warning("online %s of %s: %s (not in the activity log: %s)", entry.outcome, entry.key, entry.reason,
                    error)


def _refusal(map_name: str, error: BaseException) -> OnlineRefused:
    if is_transient(error):
        return OnlineRefused(map_name, "unavailable", f"F&O could not take the change now ({_said(error)}); "
                                                      "save again in a moment")
    if isinstance(error, ConnectorError):
        return OnlineRefused(map_name, "refused", f"F&O refused the change: {_said(error)}")
    return OnlineRefused(map_name, "refused", f"the change cannot go to F&O: {_said(error)}")  # the map's rules


def _said(error: BaseException) -> str:
    return error.message if isinstance(error, ConnectorError) and error.message else str(error)


def _entry(event: ChangeEvent, maps: MapSet, outcome: Literal["applied", "skipped", "failed"], reason: str, *,
           key: str | None = None, target_id: str | None = None) -> ActivityEntry:
    latency = (datetime.now(UTC) - event.occurred_at).total_seconds() * 1000 if outcome == "applied" else None
    return ActivityEntry(map=event.map or "", key=key or record_label(event, maps), source=event.source,
                         operation=event.operation, outcome=outcome, reason=reason, event_id=event.event_id,
                         target_id=target_id, latency_ms=latency)
