"""Map modes at work: the admin actions, parking while a map does not run, and the catch-up on resume.

- Admission: live apply asks what to do with a change of a map (apply, park, drop); the answer comes
  from the map's stored mode, cached for `cache_seconds` per process (a pause takes effect on every
  instance within that time).
- Parking: a change of a paused map (or one that errored, or is still catching up) replaces the parked
  change of its record from its side, so K changes to R records end in R writes.
- Catch-up: resume moves the map to catching up and starts a job on the sync-pages queue. Each round
  sends a page of parked changes to the changes queue, in their own sessions (the batched live path
  applies them, order per record held by the session), and removes them; a record parked again in the
  meantime keeps its newer change for a later round. Changes arriving while catching up park behind
  the record's parked change. When a round finds the table empty the map runs again, and a last sweep
  after the admission cache's horizon sends whatever was parked by instances that had not seen it yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from core.connectors.http import patience
from core.events.model import ChangeEvent
from core.maps import MapSet, TableMap
from core.maps.graph import dependency_edges
from core.maps.model import Side
from core.store.modes import ModeChanged, ParkedChange, parked_record
from core.store.queues import QueuedChange
from core.sync.batch import coalesce
from core.sync.decide import side_name
from core.sync.ingest import capped
from core.sync.modes import LABELS, TARGETS, TRANSITIONS, Action, Admission, MapMode, MapState, ModeRefused, Transition
from core.sync.worker import CATCH_UP, ORIGIN

log = logging.getLogger(__name__)



class CatchUpJob(BaseModel):
    """A round of a map's catch-up: the sync-pages queue's message body (beside page jobs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    kind: Literal["catch_up", "sweep", "probe"] = "catch_up"
    map: str = Field(min_length=1)
    side: Side | None = None  # a probe's: the side whose outage paused the map
    started: str = Field(min_length=1)  # the catch-up's start time: names its rounds for duplicate detection
    round: int = Field(0, ge=0)

    def message_id(self) -> str:
        return f"catch-up|{self.map}|{self.started}|{self.kind}|{self.round}"

    def to_json(self) -> str:
        return self.model_dump_json()


Probe = Callable[[TableMap], Awaitable[object]]  # a cheap read of a map's table on one side; raises while down


class ModeStorePort(Protocol):
    async def get(self, map_name: str) -> MapState: ...
    async def all(self) -> dict[str, MapState]: ...
    async def save(self, state: MapState, transition: Transition | None = None) -> MapState: ...
    async def history(self, map_name: str, limit: int = 50) -> list[Transition]: ...


class ParkedPort(Protocol):
    async def get(self, map_name: str, record: str) -> ParkedChange | None: ...
    async def put(self, change: ParkedChange) -> None: ...
    async def page(self, map_name: str, size: int) -> list[ParkedChange]: ...
    async def count(self, map_name: str) -> tuple[int, int]: ...
    async def remove(self, changes: list[ParkedChange]) -> list[ParkedChange]: ...


class ChangeSender(Protocol):
    async def send(self, changes: list[QueuedChange]) -> None: ...


class JobSender(Protocol):
    async def send_catch_up(self, job: CatchUpJob, *, at: datetime | None = None) -> None: ...


class UnknownMap(LookupError):
    def __init__(self, map_name: str) -> None:
        super().__init__(f"no map named {map_name!r}")
        self.map = map_name


class MapModes:
    def __init__(self, maps: MapSet, modes: ModeStorePort, parked: ParkedPort, *, changes: ChangeSender,
                 jobs: JobSender, probes: Mapping[Side, Probe] | None = None, engine_user: str = "",
                 cache_seconds: float = 2.0, round_size: int = 500, probe_seconds: float = 15.0) -> None:
        self.maps = maps
        self.probes = probes or {}
        self.probe_seconds = probe_seconds
        self.modes = modes
        self.parked = parked
        self.changes = changes
        self.jobs = jobs
        self.engine_user = engine_user
        self.cache_seconds = cache_seconds
        self.round_size = round_size
        self._cache: dict[str, tuple[float, MapState]] = {}

    # -- what live apply asks -----------------------------------------------------------------------
    async def admission(self, map_name: str, *, from_catch_up: bool) -> tuple[Admission, MapState]:
        state = await self._cached(map_name)
        return state.admission(catching_up_delivery=from_catch_up), state

    async def _cached(self, map_name: str) -> MapState:
        now = time.monotonic()
        hit = self._cache.get(map_name)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        state = await self.modes.get(map_name)
        self._cache[map_name] = (now, state)
        return state

    async def park(self, event: ChangeEvent, *, lane: str, session_id: str, origin: str, state: MapState) -> str:
        """Park a change (coalesced with its record's parked change from the same side); the activity reason."""
        map_name = event.map or ""
        record = parked_record(lane, event)
        earlier = await self.parked.get(map_name, record)
        kept, changes, first_at = event, 1, datetime.now(UTC)
        if earlier is not None:
            changes, first_at = earlier.changes + 1, earlier.first_at
            if earlier.event.occurred_at > event.occurred_at and earlier.event.operation == event.operation:
                kept, origin = earlier.event, earlier.origin  # a late delivery of an older change: keep the newer
            else:
                # Live coalescing decides: a run holding someone's own change does not pass for the engine's echo.
                kept = coalesce([earlier.event, event], [earlier.event, event], engine_user=self.engine_user)[-1].event
        await self.parked.put(ParkedChange(map_name, record, kept, session_id, origin, changes, first_at))
        why = {"paused": "the map is paused", "error": "the map is paused after errors",
               "catching_up": "the map is catching up; this record's parked change goes first"}.get(
                   state.mode, f"the map is {LABELS[state.mode]}")
        return f"parked: {why} ({changes} change(s) of this record from this side kept as the latest)"

    # -- admin actions ------------------------------------------------------------------------------
    async def state(self, map_name: str) -> MapState:
        self._known(map_name)
        return await self.modes.get(map_name)

    async def act(self, map_name: str, action: Action, *, by: str, reason: str = "") -> MapState:
        """Pause, resume, stop or start a map (ModeRefused when its mode does not allow it)."""
        self._known(map_name)
        moved = await self._move(map_name, TARGETS[action], by=by, reason=reason or f"{action} requested",
                                 action=action)
        if action == "pause":
            await self._pause_followers(map_name)
        return moved

    async def auto_pause(self, map_name: str, side: Side, reason: str) -> MapState:
        """The map's target `side` keeps failing (down, or throttling for too long): the map moves to error (an
        automatic pause: its changes park) and a probe of that side is scheduled. A map that is not running
        (already paused, stopped) stays as it is."""
        state = await self.modes.get(map_name)
        if "error" not in TRANSITIONS[state.mode]:
            return state
        try:
            saved = await self._move(map_name, "error", by="auto-pause", reason=reason)
        except (ModeRefused, ModeChanged):  # another instance paused it first
            return await self.modes.get(map_name)
        await self._probe_later(CatchUpJob(kind="probe", map=map_name, side=side, started=_stamp_at(saved.since)))
        await self._pause_followers(map_name)
        return saved

    def dependents(self, map_name: str) -> list[str]:
        """The maps whose records reference `map_name`'s (lookups, the company), directly or through others."""
        edges = dependency_edges(self.maps.values())
        found: list[str] = []
        todo = [map_name]
        while todo:
            parent = todo.pop()
            for edge in edges:
                if edge.target == parent and edge.source not in (map_name, *found):
                    found.append(edge.source)
                    todo.append(edge.source)
        return found

    async def _pause_followers(self, map_name: str) -> None:
        """Dependent maps follow their parent's pause: their changes would otherwise wait for rows the parent
        holds back (lookups retried, then in the error log). They resume once the parent has caught up."""
        for name in self.dependents(map_name):
            state = await self.modes.get(name)
            if "paused" not in TRANSITIONS[state.mode] or state.mode == "paused":
                continue
            with contextlib.suppress(ModeRefused, ModeChanged):
                await self._move(name, "paused", by=f"follows {map_name}", reason=f"{map_name} is paused")

    async def _resume_followers(self, map_name: str) -> None:
        for name in self.dependents(map_name):
            state = await self.modes.get(name)
            if state.mode == "paused" and state.by == f"follows {map_name}":
                with contextlib.suppress(ModeRefused, ModeChanged):
                    await self._move(name, "catching_up", by=f"follows {map_name}", reason=f"{map_name} caught up")

    async def _move(self, map_name: str, to: MapMode, *, by: str, reason: str, action: str | None = None) -> MapState:
        for attempt in (1, 2, 3):
            state = await self.modes.get(map_name)
            moved, transition = state.move(to, by=by, reason=reason, action=action)
            if to == "catching_up":
                records, _ = await self.parked.count(map_name)
                moved = replace(moved, catch_up=replace(moved.catch_up, parked=records))
            try:
                saved = await self.modes.save(moved, transition)
            except ModeChanged:
                if attempt == 3:
                    raise
                continue
            self._cache[map_name] = (time.monotonic(), saved)
            if to == "catching_up":
                await self.jobs.send_catch_up(CatchUpJob(map=map_name, started=_stamp(saved)))
            log.info("map %s: %s -> %s by %s (%s)", map_name, transition.from_mode, transition.to_mode, by,
                     transition.reason)
            return saved
        raise AssertionError("unreachable")

    async def _probe_later(self, job: CatchUpJob) -> None:
        wait = self.probe_seconds * 2 ** min(job.round, 2)  # 15, 30, then every 60 s
        await self.jobs.send_catch_up(job, at=datetime.now(UTC) + timedelta(seconds=wait))

    async def _probe(self, job: CatchUpJob) -> None:
        """An automatically paused map: ask its failing side again; resume (catch up) once it answers."""
        state = await self.modes.get(job.map)
        if state.mode != "error" or job.side is None:
            return
        probe = self.probes.get(job.side)
        name = side_name(job.side)
        if probe is not None:
            try:
                with patience(max_retries=0, max_total_wait=0):
                    await probe(self.maps[job.map])
            except Exception as error:  # still down: ask again later
                log.info("map %s: %s still fails (%s); next probe in a while", job.map, name, type(error).__name__)
                await self._probe_later(job.model_copy(update={"round": job.round + 1}))
                return
        try:
            await self._move(job.map, "catching_up", by="auto-resume", reason=f"{name} answers again")
        except (ModeRefused, ModeChanged):
            return  # someone moved the map meanwhile

    async def view(self, map_name: str) -> dict[str, object]:
        state = await self.state(map_name)
        records, changes = await self.parked.count(map_name)
        return _view(state, records, changes)

    async def views(self) -> list[dict[str, object]]:
        stored = await self.modes.all()
        out = []
        for name in self.maps:
            records, changes = await self.parked.count(name)
            out.append(_view(stored.get(name) or MapState(map=name), records, changes))
        return out

    async def history(self, map_name: str, limit: int = 50) -> list[dict[str, object]]:
        self._known(map_name)
        return [{"from": t.from_mode, "to": t.to_mode, "at": t.at.isoformat(), "by": t.by, "reason": t.reason}
                for t in await self.modes.history(map_name, limit)]

    # -- the catch-up job ---------------------------------------------------------------------------
    async def handle(self, job: CatchUpJob) -> None:
        if job.kind == "probe":
            await self._probe(job)
            return
        state = await self.modes.get(job.map)
        if job.kind == "sweep":
            if state.mode in ("running", "catching_up"):
                sent, _ = await self._send_round(job.map)
                await self._progress(job.map, sent)
            return
        if state.mode != "catching_up" or _stamp(state) != job.started:
            log.info("catch-up of %s round %d: the map is %s now, nothing to do", job.map, job.round, state.mode)
            return
        sent, more = await self._send_round(job.map)
        await self._progress(job.map, sent)
        if more:
            await self.jobs.send_catch_up(job.model_copy(update={"round": job.round + 1}))
            return
        await self._finish(job)

    async def _send_round(self, map_name: str) -> tuple[int, bool]:
        """Send one page of a map's parked changes to apply; (how many went, whether more may be left: the
        page was full, or some were parked again meanwhile and wait for a later round)."""
        page = await self.parked.page(map_name, self.round_size)
        if not page:
            return 0, False
        # Changes of a record's two sides go in the order they were made, as live.
        ordered = sorted(page, key=lambda change: change.event.occurred_at)
        await self.changes.send([QueuedChange(
            event=change.event, session_id=change.session_id, message_id=_message_id(change),
            properties={ORIGIN: change.origin, CATCH_UP: "1"}) for change in ordered])
        kept = await self.parked.remove(page)
        return len(page) - len(kept), len(page) >= self.round_size or bool(kept)

    async def _progress(self, map_name: str, sent: int) -> None:
        if not sent:
            return
        for _ in range(5):
            state = await self.modes.get(map_name)
            try:
                await self.modes.save(replace(state, catch_up=replace(state.catch_up, sent=state.catch_up.sent + sent)))
                return
            except ModeChanged:
                continue

    async def _finish(self, job: CatchUpJob) -> None:
        for _ in range(5):
            state = await self.modes.get(job.map)
            if state.mode != "catching_up":
                return
            moved, transition = state.move("running", by="catch-up", reason=(
                f"catch-up done: {state.catch_up.sent} parked record(s) sent to apply"))
            try:
                await self.modes.save(moved, transition)
                break
            except ModeChanged:
                continue
        self._cache.pop(job.map, None)
        await self._resume_followers(job.map)  # in dependency order: the parent's rows are on their way first
        # Instances that read the mode just before it changed may still park for a moment: sweep after.
        await self.jobs.send_catch_up(job.model_copy(update={"kind": "sweep"}),
                                      at=datetime.now(UTC) + timedelta(seconds=2 * self.cache_seconds + 1))

    def _known(self, map_name: str) -> None:
        if map_name not in self.maps:
            raise UnknownMap(map_name)


def _message_id(change: ParkedChange) -> str:
    """Stable per parked version of a record: a round sent twice is one set of changes for the broker."""
    version = hashlib.sha1((change.etag or "").encode()).hexdigest()[:10]
    return capped(f"{change.origin}|catch-up-{version}")


def _stamp(state: MapState) -> str:
    return _stamp_at(state.catch_up.started_at)


def _stamp_at(when: datetime | None) -> str:
    return when.strftime("%Y%m%dT%H%M%S%f") if when else "-"


def _view(state: MapState, records: int, changes: int) -> dict[str, object]:
    progress = state.catch_up
    mode: MapMode = state.mode
    view: dict[str, object] = {
        "map": state.map, "mode": mode, "label": LABELS[mode],
        "since": state.since.isoformat() if state.since else None, "by": state.by or None,
        "reason": state.reason or None,
        "parked": {"records": records, "changes": changes},
    }
    if progress.started_at is not None:
        view["catch_up"] = {
            "parked_at_resume": progress.parked, "sent": progress.sent,
            "left": records, "rate_per_s": progress.rate(),
            "started_at": progress.started_at.isoformat(),
            "finished_at": progress.finished_at.isoformat() if progress.finished_at else None}
    return view
