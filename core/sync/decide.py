"""The sync rule, pure: given one change, the whole source record and the record's link, what to do.

No I/O here. The applier reads (the source record, the link, the primary side when a primary_wins
check asks for it), asks `decide`, then writes and moves the link through its transitions. The
outcomes carry the reason the activity log shows, and what the write needs.

The link of a Dataverse change is found by the row id; any other is found by the record's key, which
`screen` works out first (a record that is gone or filtered out has no key worth reading a link for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.events.model import ChangeEvent
from core.maps import MapValueError, TableMap, encode_key, evaluate, project, record_key
from core.maps.convert import ProjectDirection
from core.maps.model import Side
from core.sync.compare import canon, changed, side_values
from core.sync.domain import Link
from core.sync.errors import BadChange


@dataclass(frozen=True)
class Skip:
    """Nothing to write, nothing to remember."""

    reason: str
    key: str  # the record as the logs name it


@dataclass(frozen=True)
class Remember:
    """Nothing to write (an echo, or a no-op), but the link learns the source's values."""

    reason: str
    key: str
    source_values: dict[str, Any]
    echo: bool


@dataclass(frozen=True)
class Refuse:
    """The map's conflict policy keeps the target's version (the applier raises ConflictSkipped)."""

    reason: str


@dataclass(frozen=True)
class Write:
    """Write the record to the target side: only `changes` to the linked row, else all of `projected`."""

    key: tuple[str, ...]
    target: Side
    projected: dict[str, Any]  # the whole record in the target's terms
    changes: dict[str, Any]  # what the target does not hold yet, as far as the link knows
    source_values: dict[str, Any]
    update: bool  # the record is linked (else: created, or upserted by key)
    check_primary: bool  # primary_wins with the target as primary: read it and `check_primary` first
    check_latest: bool = False  # latest_wins on a linked record: read the target and `check_latest` first

    @property
    def key_text(self) -> str:
        return encode_key(self.key)

    def reason(self, *, created: bool) -> str:
        if created and self.update:
            return f"created again: the linked {side_name(self.target)} record had been deleted and no delete arrived"
        return "created" if created else f"updated {', '.join(sorted(self.changes))}"


@dataclass(frozen=True)
class Delete:
    """Delete the record on the target side and leave a tombstone link."""

    key: tuple[str, ...]
    target: Side

    @property
    def key_text(self) -> str:
        return encode_key(self.key)

    def reason(self, *, gone: bool) -> str:
        return "deleted" if gone else f"already absent in {side_name(self.target)}"


@dataclass(frozen=True)
class WriteBack:
    """Latest wins, and the other side changed some of this change's columns later: on those this change
    loses, and the later values are written back over it, so both sides agree again (without this, the
    older values would stay on their own side only). The change's other columns still go across."""

    reason: str
    key: tuple[str, ...]
    loser: Side  # the side this change came from, written back to
    source_values: dict[str, Any]  # what the loser holds now (this change's record)
    contested: frozenset[str] = frozenset()  # the winner's columns it changed later: written back
    projected: dict[str, Any] = field(default_factory=dict)  # this change's record, projected to the winner
    forward: dict[str, Any] = field(default_factory=dict)  # this change's other columns: they still go across

    @property
    def key_text(self) -> str:
        return encode_key(self.key)

    @property
    def winner(self) -> Side:
        return other(self.loser)


Decision = Skip | Remember | Refuse | Write | WriteBack | Delete


def decide(table_map: TableMap, event: ChangeEvent, record: Mapping[str, Any] | None, link: Link | None, *,
           ours: bool, maps: Mapping[str, TableMap]) -> Decision:
    """What one change does. `record`: the whole source record (None: it no longer exists); for a delete,
    the key-bearing pre image (None when the link was found by row id). `link`: the record's link, if
    any. `ours`: the change was made by the engine's own user."""
    screened = screen(table_map, event, record, link, maps=maps)
    if isinstance(screened, Skip):
        return screened
    key, key_text, target = screened, encode_key(screened), other(event.source)
    if event.operation == "delete":
        if link is not None and link.state == "deleted":
            return Skip("echo: the delete was already propagated", key_text)
        return Delete(key, target)
    assert record is not None  # screened
    if event.source == "dataverse" and _stale(event, link):
        return Skip(f"stale: version {event.version} is older than the applied "
                    f"{link.versions.get('dataverse') if link else ''}", key_text)
    direction: ProjectDirection = "to_dataverse" if event.source == "fno" else "to_fno"
    projected = project(table_map, direction, record, maps=maps)
    source_values = side_values(table_map, event.source, record)
    if link is None or not link.linked:
        return Write(key, target, projected, dict(projected), source_values, update=False, check_primary=False)
    changes = changed(projected, link.known(target))
    if not changes:
        echo = source_values == link.values.get(event.source) or ours
        reason = ("echo: no mapped column changed since the engine last synced this record" if echo
                  else f"no-op: {side_name(target)} already holds these values")
        return Remember(reason, key_text, source_values, echo=echo)
    if ours and event.operation == "refetch":
        # The row as it is now (a sweep's find, a run of deliveries out of order), last written by the engine. What
        # moved on this side since the engine last knew it is someone else's change whose event never came (made
        # before the engine's write, of other columns): that goes across. The rest is the engine's own values, or
        # one-way columns nobody changed here: only remembered. A column the engine knew empty and finds filled is
        # not counted: the side fills what a create left empty with its defaults (F&O's "No", 0), which are not
        # anyone's change (so a user filling an empty column while the app was down, before the engine wrote
        # another column of the row, is still missed; see the issue-18 note).
        known = link.values.get(event.source, {})
        moved = {name for name, value in source_values.items()
                 if name in known and known[name] is not None and known[name] != value}
        theirs = table_map.counterparts(event.source, moved)
        changes = {name: value for name, value in changes.items() if name in theirs}
        if not changes:
            return Remember("echo: the engine wrote this record last, and no mapped column moved since", key_text,
                            source_values, echo=True)
    elif ours:
        if not _agrees(source_values, link.values.get(event.source, {})):
            # The engine's own write, but not its latest: a webhook overtaken by later writes of this
            # record. Sending it back would undo them on the other side.
            return Skip("stale: an earlier write of the engine's own, since overtaken", key_text)
        # Written by the engine and holding what it wrote: an echo, even where the other side differs
        # in columns this side does not send (one-way mappings); those are only remembered.
        return Remember("echo: the engine's own write came back", key_text, source_values, echo=True)
    if table_map.conflict == "latest_wins":
        contested, their_at = link.changed_after(target, changes, event.occurred_at)
        if contested:
            what = ("this record" if contested == set(changes) and not link.keeps_column_times
                    else ", ".join(sorted(contested)))
            return WriteBack(f"conflict, latest wins: {side_name(target)} changed {what} at {their_at}, "
                             f"after this change ({event.occurred_at.isoformat()})", key, event.source,
                             source_values, frozenset(contested), projected,
                             {name: value for name, value in changes.items() if name not in contested})
    return Write(key, target, projected, changes, source_values, update=True,
                 check_primary=table_map.conflict == "primary_wins" and event.source != table_map.primary,
                 check_latest=table_map.conflict == "latest_wins")


def screen(table_map: TableMap, event: ChangeEvent, record: Mapping[str, Any] | None, link: Link | None, *,
           maps: Mapping[str, TableMap]) -> Skip | tuple[str, ...]:
    """The part of `decide` that needs no link by key: the record's key, or why nothing follows.
    `link`: the link found by the Dataverse row id, if any."""
    if event.operation == "delete":
        return _delete_key(table_map, event, record, link, maps)
    if (event.source == "dataverse" and link is not None and link.state == "deleted"
            and (link.dataverse_id or "") == (event.record_id or "").lower()):
        # Async webhooks arrive late: a change of a row whose delete was already synced must not
        # bring the record back on the other side.
        return Skip("stale: this Dataverse row was deleted after the change", encode_key(link.key))
    if record is None:
        return Skip(f"the record no longer exists in {side_name(event.source)} (a delete follows)",
                    record_label(event, maps))
    node = table_map.source_filter(event.source)
    if node is not None and not evaluate(node, record):
        return Skip(f"filtered out by the {side_name(event.source)} filter of the map", record_label(event, maps))
    return record_key(table_map, event.source, record)


def _delete_key(table_map: TableMap, event: ChangeEvent, record: Mapping[str, Any] | None, link: Link | None,
                maps: Mapping[str, TableMap]) -> Skip | tuple[str, ...]:
    # Deletes travel by integration key: the link's, else the F&O event's keys or the Dataverse pre image.
    if event.source == "fno":
        try:
            return record_key(table_map, "fno", record or {})
        except MapValueError as error:
            raise BadChange(f"the F&O delete lacks its key: {error}") from None
    if link is not None:
        return link.key
    try:
        return record_key(table_map, "dataverse", record or {})
    except MapValueError:
        return Skip("delete of a row never synced, and its pre image lacks the integration key",
                    record_label(event, maps))


def check_primary(table_map: TableMap, event: ChangeEvent, link: Link, write: Write,
                  current: Mapping[str, Any] | None) -> Refuse | None:
    """Under primary_wins, a change from the other side is refused where the primary (the target, read as
    `current`) changed the same columns since the last sync, to something else."""
    if current is None:
        return None
    now = side_values(table_map, write.target, current)
    known = link.values.get(write.target, {})
    moved = sorted(name for name, value in write.changes.items()
                   if name in now and now.get(name) != known.get(name) and now.get(name) != canon(value))
    if not moved:
        return None
    return Refuse(f"map {table_map.name!r}: {side_name(write.target)} (the primary side) changed "
                  f"{', '.join(moved)} since the last sync; primary wins, so this {side_name(event.source)} "
                  "change is not applied. Resubmit it to apply it anyway once the primary's change has synced.")


def check_latest(table_map: TableMap, event: ChangeEvent, link: Link, write: Write,
                 current: Mapping[str, Any] | None, modified_at: datetime | None) -> WriteBack | str | None:
    """Under latest_wins, the target (read as `current`, last changed at `modified_at`) may hold a change whose
    event has not been applied yet: the link cannot know of it, and writing over it blind would lose it (its own
    event would then read the engine's write back and pass for an echo). The columns this change writes that the
    target changed since the last sync, to something else, are contested:
    - the target's change is later: it wins them (a WriteBack: written over this change's side), the rest goes on;
      the same second counts as later, since both services keep whole seconds and what is in place is kept rather
      than overwritten on a guess; an unknown time likewise;
    - this change is later: it is written as usual, and the returned text says which change it overwrote;
    - nothing contested: None."""
    if current is None:
        return None
    now = side_values(table_map, write.target, current)
    known = link.values.get(write.target, {})
    unseen = sorted(name for name, value in write.changes.items()
                    if name in now and name in known and now[name] != known[name] and now[name] != canon(value))
    if not unseen:
        return None
    theirs, ours = side_name(write.target), event.occurred_at
    if modified_at is None or modified_at >= (ours if modified_at.microsecond else ours.replace(microsecond=0)):
        when = modified_at.isoformat() if modified_at else "a time it does not tell"
        reason = (f"conflict, latest wins: {theirs} changed {', '.join(unseen)} at {when} (not synced yet), "
                  f"not before this change ({ours.isoformat()})")
        return WriteBack(reason, write.key, event.source, write.source_values, frozenset(unseen), write.projected,
                         {name: value for name, value in write.changes.items() if name not in unseen})
    return (f"conflict, latest wins: this change ({ours.isoformat()}) overwrote {theirs}'s earlier change of "
            f"{', '.join(unseen)} at {modified_at.isoformat()} (not synced yet)")


def held(table_map: TableMap, write: Write, current: Mapping[str, Any]) -> bool:
    """Whether the target, read as `current`, already holds every value the write would send: an earlier delivery
    of this change wrote it and was cut off before the link was saved (a host killed, an answer lost), or the
    values got there another way. Writing again would change nothing but the row's version."""
    now = side_values(table_map, write.target, current)
    return all(name in now and now[name] == canon(value) for name, value in write.changes.items())


def record_label(event: ChangeEvent, maps: Mapping[str, TableMap] | None = None) -> str:
    """The record's name in the activity and error logs: its canonical integration key when the event
    carries it (F&O events), so failures list under the same key as successes; else the row id."""
    if event.source == "fno" and event.keys:
        if maps is not None and event.map is not None and event.map in maps:
            try:
                return encode_key(record_key(maps[event.map], "fno", {**(event.pre or {}), **event.keys}))
            except MapValueError:
                pass
        return "|".join(str(v) for v in event.keys.values())
    return f"dataverse:{event.record_id}"


def other(side: Side) -> Side:
    return "dataverse" if side == "fno" else "fno"


def side_name(side: Side) -> str:
    return "F&O" if side == "fno" else "Dataverse"


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
