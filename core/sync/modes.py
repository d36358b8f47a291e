"""A map's mode: an explicit state machine, pure (no I/O).

not started -> initial sync -> running <-> paused -> catching up -> running; stopped drops changes on
purpose (with a recorded reason); error is an automatic pause. Every allowed move is in TRANSITIONS
and nowhere else; the admin actions (pause, resume, stop, start) and the engine's own moves
(catch-up done, auto-pause) go through `move`, which refuses anything else with the reason.

What live apply does with a change of a map follows from its mode (`admission`): apply it, park it
(coalesced per record until the map catches up) or drop it (stopped: on purpose, recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, get_args

MapMode = Literal["not_started", "initial_sync", "running", "paused", "catching_up", "stopped", "error"]
MODES: tuple[str, ...] = get_args(MapMode)
Action = Literal["pause", "resume", "stop", "start"]
ACTIONS: tuple[str, ...] = get_args(Action)
Admission = Literal["apply", "park", "drop"]

# Every allowed move, in one place. A map nobody ever moved is running (maps deployed before modes
# existed, and the maps `make run` deploys, sync live from the start).
TRANSITIONS: dict[MapMode, frozenset[MapMode]] = {
    "not_started": frozenset({"initial_sync", "running", "stopped"}),
    "initial_sync": frozenset({"running", "paused", "stopped", "error"}),
    "running": frozenset({"initial_sync", "paused", "stopped", "error"}),
    "paused": frozenset({"catching_up", "stopped"}),
    "catching_up": frozenset({"running", "paused", "stopped", "error"}),
    "stopped": frozenset({"running", "initial_sync"}),
    "error": frozenset({"paused", "catching_up", "stopped"}),
}

# What each admin action moves a map to.
TARGETS: dict[Action, MapMode] = {"pause": "paused", "resume": "catching_up", "stop": "stopped", "start": "running"}

LABELS: dict[MapMode, str] = {"not_started": "not started", "initial_sync": "initial sync", "running": "running",
                              "paused": "paused", "catching_up": "catching up", "stopped": "stopped",
                              "error": "error"}


class ModeRefused(Exception):
    """The move is not allowed from the map's current mode."""

    def __init__(self, map_name: str, mode: MapMode, to: MapMode, action: str | None = None) -> None:
        allowed = sorted(m for m, targets in TRANSITIONS.items() if to in targets)
        what = action or f"moving to {LABELS[to]}"
        super().__init__(f"map {map_name!r} is {LABELS[mode]}: {what} is allowed only from "
                         f"{', '.join(LABELS[m] for m in allowed)}")
        self.map = map_name
        self.mode = mode
        self.to = to
        self.action = action


@dataclass(frozen=True)
class Transition:
    """One recorded move: who moved the map, when and why."""

    map: str
    from_mode: MapMode
    to_mode: MapMode
    at: datetime
    by: str
    reason: str


@dataclass(frozen=True)
class CatchUp:
    """Progress of the catch-up under way (or last finished): parked records found at resume, records
    sent to apply since, and when it started and ended."""

    parked: int = 0
    sent: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def rate(self, now: datetime | None = None) -> float | None:
        """Records sent per second so far."""
        if self.started_at is None:
            return None
        seconds = ((self.finished_at or now or datetime.now(UTC)) - self.started_at).total_seconds()
        return round(self.sent / seconds, 1) if seconds > 0 else None


@dataclass(frozen=True)
class MapState:
    """A map's mode as stored: the mode, the move that set it, and catch-up progress."""

    map: str
    mode: MapMode = "running"
    since: datetime | None = None
    by: str = ""
    reason: str = ""
    catch_up: CatchUp = field(default_factory=CatchUp)
    etag: str | None = None  # the stored row's, for a guarded save (None: never stored)

    def move(self, to: MapMode, *, by: str, reason: str, action: str | None = None,
             now: datetime | None = None) -> tuple[MapState, Transition]:
        """The state after moving to `to`, and the move to record; ModeRefused when not allowed."""
        if to not in TRANSITIONS[self.mode]:
            raise ModeRefused(self.map, self.mode, to, action)
        at = now or datetime.now(UTC)
        catch_up = self.catch_up
        if to == "catching_up":
            catch_up = CatchUp(started_at=at)
        elif self.mode == "catching_up" and to == "running":
            catch_up = replace(catch_up, finished_at=at)
        moved = replace(self, mode=to, since=at, by=by, reason=reason, catch_up=catch_up)
        return moved, Transition(self.map, self.mode, to, at, by, reason)

    def act(self, action: Action, *, by: str, reason: str = "") -> tuple[MapState, Transition]:
        """An admin action (pause, resume, stop, start)."""
        return self.move(TARGETS[action], by=by, reason=reason or f"{action} requested", action=action)

    def admission(self, *, catching_up_delivery: bool = False) -> Admission:
        """What live apply does with a change of this map. A change sent by the catch-up itself is applied
        while catching up (or once running again); any other change parks until the map runs."""
        if self.mode in ("running", "initial_sync"):
            return "apply"
        if self.mode == "catching_up":
            return "apply" if catching_up_delivery else "park"
        if self.mode in ("paused", "error"):
            return "park"
        return "drop"
