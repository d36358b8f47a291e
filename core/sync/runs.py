"""Initial-sync and reconciliation runs, pure: what a run is, its states, and the page jobs it is made of.

A run covers maps in dependency order (core.maps.plan_sync). Each map is read from its source side in
pages; every page is a job on the sync-pages queue (`PageJob`), and the job of page n is sent as soon
as page n-1 has been read, so pages of a map are written side by side. A map's pass ends when its last
page is done; the run then moves to the map's next pass or the next map:

- `rows`: the source's rows written to the target (initial, repair) or compared with it (compare),
  without the lookups that a cycle defers (written in `patch` once their targets exist);
- `patch`: the deferred lookups, after every map's rows (the "sync twice" workaround, computed);
- `orphans` (compare, repair): the target's rows, looking for those the source lacks.

Checkpoints (one per page, in Table Storage) make a run resumable: a job whose page is done is a no-op,
and re-applying a page writes nothing that the target already holds (rows are compared first).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from core.maps.keys import encode_key
from core.maps.model import Side

RunKind = Literal["initial", "compare", "repair"]
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
Pass = Literal["rows", "patch", "orphans"]
RowOutcome = Literal["missing_on_target", "missing_on_source", "differs", "failed", "sample"]
KINDS: tuple[str, ...] = get_args(RunKind)
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

# The run's state machine, in one place.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"completed", "failed", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class RunStateError(ValueError):
    """A transition the state machine does not allow (e.g. cancelling a completed run)."""


@dataclass
class Tally:
    """What a page (or a map, or a run: tallies add up) did with its rows."""

    read: int = 0
    written: int = 0  # created or updated on the target (or would be, in a dry run)
    matched: int = 0  # already equal: linked, nothing written
    skipped: int = 0  # filtered out, or nothing to do
    failed: int = 0
    differs: int = 0  # different on both sides and left alone (compare, or the target is the primary)
    missing_on_target: int = 0
    missing_on_source: int = 0
    deleted: int = 0  # repair: rows the source lacks, removed from the target

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        return cls(**{f.name: int(data.get(f.name) or 0) for f in fields(cls)})


@dataclass
class Run:
    id: str
    kind: RunKind
    maps: list[str]  # in the order they run
    sources: dict[str, Side]  # per map: the side read (the truth of the run)
    deferred: dict[str, list[str]] = field(default_factory=dict)  # per map: lookups left to the patch pass
    dry_run: bool = False
    retry_of: str | None = None  # re-run of just this run's failed rows
    status: RunStatus = "queued"
    message: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    requested_by: str | None = None
    etag: str | None = None

    @property
    def writes(self) -> bool:
        return self.kind != "compare" and not self.dry_run

    def passes(self) -> list[tuple[str, Pass]]:
        """Every (map, pass) of the run, in order."""
        steps: list[tuple[str, Pass]] = [(name, "rows") for name in self.maps]
        steps += [(name, "patch") for name in self.maps if self.deferred.get(name) and self.kind != "compare"]
        if self.kind != "initial" and self.retry_of is None:
            steps += [(name, "orphans") for name in self.maps]
        return steps

    def after(self, map_name: str, pass_: Pass) -> tuple[str, Pass] | None:
        steps = self.passes()
        index = steps.index((map_name, pass_))
        return steps[index + 1] if index + 1 < len(steps) else None

    def move(self, status: RunStatus, message: str | None = None) -> None:
        if status == self.status:
            return
        if status not in TRANSITIONS[self.status]:
            raise RunStateError(f"run {self.id} is {self.status}; it cannot become {status}")
        self.status = status
        self.message = message if message is not None else self.message
        self.updated_at = datetime.now(UTC)
        if status in TERMINAL:
            self.finished_at = self.updated_at


@dataclass(frozen=True)
class RowNote:
    """A row worth listing: missing on a side, differing (with the columns), failed (with the error)."""

    map: str
    key: tuple[str, ...]
    outcome: RowOutcome
    columns: tuple[str, ...] = ()
    detail: str | None = None
    values: dict[str, Any] | None = None  # a dry run's sample: what would be written

    def as_dict(self) -> dict[str, Any]:
        return {"map": self.map, "key": encode_key(self.key), "kind": self.outcome, "columns": list(self.columns),
                "detail": self.detail, "values": self.values}


class PageJob(BaseModel):
    """One page of one map's pass: the sync-pages queue's message body."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    v: Literal[1] = 1
    run: str = Field(min_length=1)
    map: str = Field(min_length=1)
    pass_: Pass = Field(alias="pass")
    page: int = Field(ge=0)
    next_link: str | None = None  # where the page starts (None: the first page)
    wait: int = Field(0, ge=0)  # times the job was sent on because another worker held its page

    def message_id(self) -> str:
        """Stable per page: a job sent twice (a redelivered previous page) is one job for the broker."""
        base = f"{self.run}|{self.map}|{self.pass_}|{self.page}"
        return f"{base}|wait-{self.wait}" if self.wait else base

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


@dataclass(frozen=True)
class PageMark:
    """A page's checkpoint: read (its rows known, the next page sent) or done (its tally final)."""

    page: int
    state: Literal["read", "done"]
    last: bool  # no page follows
    tally: Tally


@dataclass
class MapProgress:
    map: str
    source: Side
    pass_: Pass | None
    status: Literal["waiting", "running", "patching", "checking", "done", "cancelled"]
    pages_read: int
    pages_done: int
    last_page: bool
    tally: Tally
    started_at: datetime | None
    rows_per_s: float | None = None
    eta_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"map": self.map, "source": self.source, "pass": self.pass_, "status": self.status,
                "pages_read": self.pages_read, "pages_done": self.pages_done, "last_page": self.last_page,
                **self.tally.as_dict(), "rows_per_s": self.rows_per_s, "eta_s": self.eta_s}


def progress_of(run: Run, map_name: str, marks: dict[Pass, list[PageMark]], *,
                started: dict[Pass, datetime | None], now: datetime | None = None) -> MapProgress:
    """One map's progress from its page checkpoints: counts are the rows pass's (plus what patch and
    orphans add), rate and ETA from the rows pass's pages so far."""
    now = now or datetime.now(UTC)
    tally = Tally()
    for pass_marks in marks.values():
        for mark in pass_marks:
            tally.add(mark.tally)
    current: Pass | None = None
    for name, pass_ in run.passes():
        if name == map_name and marks.get(pass_):
            current = pass_
    rows = marks.get("rows", [])
    done = [m for m in rows if m.state == "done"]
    last = any(m.last for m in rows)
    steps = [p for n, p in run.passes() if n == map_name]
    finished = all(pass_done(marks.get(p, [])) for p in steps)
    if run.status == "cancelled" and not finished:
        status: Any = "cancelled"
    elif finished:
        status = "done"
    elif current is None:
        status = "waiting"
    else:
        status = {"rows": "running", "patch": "patching", "orphans": "checking"}[current]
    rate = eta = None
    began = started.get("rows")
    if began is not None and done:
        seconds = max(0.001, (now - began).total_seconds())
        rows_done = sum(m.tally.read for m in done)
        rate = round(rows_done / seconds, 1)
        if last and rate > 0:  # before the last page is read, the source does not say how many rows follow
            left = sum(m.tally.read for m in rows if m.state != "done")
            eta = round(left / rate, 1)
    return MapProgress(map_name, run.sources[map_name], current, status, len(rows), len(done), last, tally,
                       began, rate, eta)


def pass_done(marks: list[PageMark]) -> bool:
    """Every page up to the last one is done."""
    if not marks:
        return False
    last = [m.page for m in marks if m.last]
    if not last:
        return False
    done = {m.page for m in marks if m.state == "done"}
    return all(n in done for n in range(last[0] + 1))
