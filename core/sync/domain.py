"""The engine's domain types, free of Azure: a record's link, and what the activity and error logs hold.

The stores in core/store persist these (and re-export them under their old names); the sync rule in
core/sync/decide reads them; only the applier changes a link, through its transition methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from core.events.model import ChangeEvent
from core.maps.model import Side
from core.sync.compare import values_hash

LinkState = Literal["linked", "deleted"]


class LinkConflict(Exception):
    """The link changed (or appeared, or vanished) since it was read: re-read and decide again."""


class LinkTooLarge(ValueError):
    """A link's values do not fit a Table Storage property."""


@dataclass
class Link:
    """One synced record of one map: both sides' identities, per side the last values known (canonical
    form, see core.sync.compare) with their hashes, and the last applied source versions and change times."""

    map: str
    key: tuple[str, ...]
    dataverse_id: str | None = None
    fno_key: dict[str, Any] | None = None
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    state: LinkState = "linked"
    updated_at: datetime | None = None
    etag: str | None = None

    @property
    def linked(self) -> bool:
        return self.state == "linked"

    def known(self, side: Side) -> dict[str, Any]:
        """What the side holds as far as the engine knows (nothing once the record was deleted)."""
        return self.values.get(side, {}) if self.linked else {}

    @property
    def keeps_column_times(self) -> bool:
        """Whether the link knows change times per column (links written before those were kept do not)."""
        return any("_at:" in name for name in self.versions)

    def changed_after(self, side: Side, columns: Iterable[str], when: datetime) -> tuple[set[str], str | None]:
        """Which of `side`'s `columns` that side changed after `when` (latest wins compares by column: a
        later change of the phone must not undo an earlier rename), with the latest such change time.
        A link from before column times were kept (none on either side) knows only the record's time: then
        every column counts."""
        at = self.versions.get(f"{side}_at")
        if at is None or datetime.fromisoformat(at) <= when:
            return set(), None
        prefix = f"{side}_at:"
        if not self.keeps_column_times:
            return set(columns), at
        later = {c: t for c in columns if (t := self.versions.get(prefix + c)) and datetime.fromisoformat(t) > when}
        return set(later), max(later.values(), key=datetime.fromisoformat) if later else None

    # -- transitions (the applier saves the link after each) ----------------------------------------
    def wrote(self, event: ChangeEvent, *, target_values: dict[str, Any], source_values: dict[str, Any],
              dataverse_id: str | None, fno_key: dict[str, Any] | None) -> None:
        """The event's values were written to the other side: both sides now hold them. An id or key
        not given (the write did not report one) is kept."""
        target: Side = "dataverse" if event.source == "fno" else "fno"
        moved = _moved(self.known(event.source), source_values)
        self.values[target] = {**self.known(target), **target_values}
        self.state = "linked"
        self.values[event.source] = source_values
        self._rehash()
        self.dataverse_id = dataverse_id or self.dataverse_id
        self.fno_key = fno_key or self.fno_key
        self._note(event, columns=moved)
        self.updated_at = datetime.now(UTC)

    def remembered(self, event: ChangeEvent, source_values: dict[str, Any], *, echo: bool) -> bool:
        """Nothing was written, but the link learns the source's values; whether it changed (needs a save).
        An echo is not a change made on that side, so it does not move that side's change time (latest
        wins compares those)."""
        before = self._learned(event.source)
        moved = _moved(self.known(event.source), source_values)
        self.values[event.source] = source_values
        self._note(event, changed=not echo, columns=moved)
        if self._learned(event.source) == before:
            return False
        self._rehash()
        self.updated_at = datetime.now(UTC)
        return True

    def written_back(self, event: ChangeEvent, *, winner_values: dict[str, Any],
                     loser_values: dict[str, Any], won: Iterable[str] = ()) -> None:
        """The event lost to the other side's later version, which was written back over it: both sides
        now hold that version. The loser's change time moves only for the columns it `won` (those the
        later change left alone, written to the winner)."""
        loser = event.source
        winner: Side = "dataverse" if loser == "fno" else "fno"
        self.values[winner] = winner_values
        self.values[loser] = loser_values
        self._rehash()
        won = set(won)
        self._note(event, changed=bool(won), columns=won)
        self.updated_at = datetime.now(UTC)

    def noticed(self, side: Side, columns: Iterable[str], at: datetime) -> None:
        """A change of `side` the engine met by reading the record before its event came (latest wins): its time,
        for the record and those columns, so changes arriving later are judged against it."""
        for name in (f"{side}_at", *(f"{side}_at:{c}" for c in columns)):
            known = self.versions.get(name)
            if known is None or datetime.fromisoformat(known) < at:
                self.versions[name] = at.isoformat()

    def tombstoned(self, event: ChangeEvent) -> None:
        """The record was deleted on both sides; the tombstone stays so the delete's echo is recognised."""
        self.state = "deleted"
        self.values = {}
        self.hashes = {}
        if event.source == "dataverse" and event.record_id:
            self.dataverse_id = event.record_id.lower()  # the tombstone keeps the deleted row's id
        self._note(event)
        self.updated_at = datetime.now(UTC)

    def _learned(self, side: Side) -> tuple[Any, ...]:
        """What a save must keep of a side: its values, its change time and, for Dataverse, its version (the
        stale-event guard). An F&O ControlNumber guards nothing, so an echo moving only that saves nothing."""
        version = self.versions.get(side) if side == "dataverse" else None
        return self.values.get(side), version, self.versions.get(f"{side}_at")

    def _rehash(self) -> None:
        self.hashes = {s: values_hash(v) for s, v in self.values.items()}

    def _note(self, event: ChangeEvent, *, changed: bool = True, columns: Iterable[str] = ()) -> None:
        """Keep the event's version and, for a change made on its side, its time: for the record and for
        each of the `columns` it changed (only ever moved forward: events arrive out of order)."""
        if event.version:
            self.versions[event.source] = event.version
        if not changed:
            return
        for name in (f"{event.source}_at", *(f"{event.source}_at:{c}" for c in columns)):
            at = self.versions.get(name)
            if at is None or datetime.fromisoformat(at) < event.occurred_at:
                self.versions[name] = event.occurred_at.isoformat()


def _moved(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """The columns whose (canonical) value differs between two versions of one side's values."""
    return {name for name, value in after.items() if name not in before or before[name] != value}


# -- the activity log ---------------------------------------------------------------------------------
Outcome = Literal["applied", "skipped", "parked", "failed", "retrying"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)


@dataclass
class ActivityEntry:
    map: str
    key: str
    source: str
    operation: str
    outcome: Outcome
    reason: str
    event_id: str = ""
    message_id: str = ""
    target_id: str | None = None
    detail: str | None = None
    latency_ms: float | None = None  # source change time -> target write time
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


# -- the error log ------------------------------------------------------------------------------------
Category = Literal["application", "system", "conflict", "lookup_pending", "throttled"]
ErrorStatus = Literal["open", "resubmitted", "discarded"]
CATEGORIES: tuple[str, ...] = get_args(Category)
STATUSES: tuple[str, ...] = get_args(ErrorStatus)


@dataclass
class ErrorEntry:
    id: str
    map: str
    key: str
    source: str
    operation: str
    category: Category
    text: str
    attempts: int
    change: str
    session_id: str
    first_at: datetime
    last_at: datetime
    status: ErrorStatus = "open"
    target_status: int | None = None
    target_code: str | None = None
    run_id: str | None = None  # the initial-sync or repair run the failure belongs to
