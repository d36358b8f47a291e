"""A batch of queued changes, cut into lanes and coalesced: pure, no I/O.

A lane is one record of one map (its order key: the integration key without the company, which
both sides' events carry without a read). Lanes are independent and run side by side; a lane's
changes run one after the other, in the order they were queued.

Coalescing within a lane: a run of consecutive creates/updates/refetches from one side becomes its
last change, which carries the net result (apply reads or images the whole record, and writes only
what differs from what the target holds). Deletes, and changes from the other side, end a run, so
create/delete/create keep their meaning and the two sides' changes still meet the conflict policy
one by one. A run holding any change not made by the engine is not an echo, whatever its last
change says.

A Dataverse change carries its image of the row, and deliveries come out of order (replays, the
broker's redelivery): when the change a run ends with may be older than one it absorbed (a create
delivered after a change of its row, or a lower RowVersion), its image would write older values,
and the newer changes it stands for would be lost. Such a run is applied as a refetch: apply reads
the row as it is now. (F&O changes are always read again.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from core.events.model import ChangeEvent

T = TypeVar("T")


@dataclass
class Step(Generic[T]):
    """What a lane applies: one change (`item`, its `event` possibly merged) and the earlier changes
    of its run it stands for (`absorbed`, recorded as coalesced)."""

    item: T
    event: ChangeEvent
    absorbed: list[T] = field(default_factory=list)


def coalesce(items: Sequence[T], events: Sequence[ChangeEvent], *, engine_user: str = "") -> list[Step[T]]:
    """The steps of one lane, in order (items[i] carries events[i])."""
    steps: list[Step[T]] = []
    for item, event in zip(items, events, strict=True):
        last = steps[-1] if steps else None
        if last is not None and _joins(last.event, event):
            merged = event
            if _by_engine(event, engine_user) and not _by_engine(last.event, engine_user):
                # The run holds someone's own change: the kept change must not pass for an echo.
                merged = event.model_copy(update={"initiated_by": last.event.initiated_by})
            if event.source == "dataverse" and _maybe_older(event, last.event):
                merged = merged.model_copy(update={"operation": "refetch", "partial": True,
                                                   "version": _newer_version(event.version, last.event.version)})
            steps[-1] = Step(item, merged, [*last.absorbed, last.item])
        else:
            steps.append(Step(item, event))
    return steps


def _joins(earlier: ChangeEvent, later: ChangeEvent) -> bool:
    if earlier.source != later.source or earlier.map != later.map or "delete" in (earlier.operation, later.operation):
        return False
    # One lane may hold two records that share a number in two companies: only the same record joins.
    if later.source == "dataverse":
        return (earlier.record_id or "").lower() == (later.record_id or "").lower()
    return _fno_key(earlier) == _fno_key(later)


def _fno_key(event: ChangeEvent) -> dict[str, str]:
    return {name.lower(): str(value).lower() for name, value in {**(event.pre or {}), **event.keys}.items()}


def _by_engine(event: ChangeEvent, engine_user: str) -> bool:
    return bool(engine_user) and (event.initiated_by or "").strip("{}").lower() == engine_user.lower()


def _maybe_older(later: ChangeEvent, earlier: ChangeEvent) -> bool:
    """Whether the change delivered later may show an older row than the one delivered before it."""
    if later.operation == "create" or earlier.operation == "refetch":
        return True  # a create after a change of its own row is a late one; a refetch reads the newest anyway
    if later.version and earlier.version:
        try:
            return int(later.version) < int(earlier.version)
        except ValueError:
            return False
    return False


def _newer_version(one: str | None, other: str | None) -> str | None:
    if one and other:
        try:
            return one if int(one) >= int(other) else other
        except ValueError:
            return one
    return one or other
