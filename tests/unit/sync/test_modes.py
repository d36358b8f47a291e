"""The map mode state machine (core.sync.modes): every move allowed or refused, and what apply does in each mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.sync.modes import ACTIONS, MODES, TARGETS, TRANSITIONS, CatchUp, MapState, ModeRefused

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)

ALLOWED = {
    ("not_started", "initial_sync"), ("not_started", "running"), ("not_started", "stopped"),
    ("initial_sync", "running"), ("initial_sync", "paused"), ("initial_sync", "stopped"), ("initial_sync", "error"),
    ("running", "initial_sync"), ("running", "paused"), ("running", "stopped"), ("running", "error"),
    ("paused", "catching_up"), ("paused", "stopped"),
    ("catching_up", "running"), ("catching_up", "paused"), ("catching_up", "stopped"), ("catching_up", "error"),
    ("stopped", "running"), ("stopped", "initial_sync"),
    ("error", "paused"), ("error", "catching_up"), ("error", "stopped"),
}


def test_the_table_is_exactly_the_documented_machine() -> None:
    assert set(TRANSITIONS) == set(MODES)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(("start", "to"), [(a, b) for a in MODES for b in MODES])
def test_every_move_is_allowed_or_refused_with_the_reason(start: str, to: str) -> None:
    state = MapState(map="customers", mode=start)  # type: ignore[arg-type]
    if (start, to) in ALLOWED:
        moved, transition = state.move(to, by="ana", reason="maintenance", now=T0)  # type: ignore[arg-type]
        assert (moved.mode, moved.since, moved.by, moved.reason) == (to, T0, "ana", "maintenance")
        assert (transition.from_mode, transition.to_mode, transition.at, transition.by) == (start, to, T0, "ana")
    else:
        with pytest.raises(ModeRefused) as refused:
            state.move(to, by="ana", reason="x")  # type: ignore[arg-type]
        assert str(refused.value).startswith(f"map 'customers' is {start.replace('_', ' ')}: moving to ")
        assert (refused.value.mode, refused.value.to) == (start, to)


def test_actions_name_their_mode_and_a_refused_action_says_where_it_is_allowed() -> None:
    assert set(ACTIONS) == set(TARGETS)
    paused, _ = MapState(map="customers").act("pause", by="ana")
    assert paused.mode == "paused" and paused.reason == "pause requested"
    with pytest.raises(ModeRefused, match="map 'customers' is paused: pause is allowed only from catching up, error, "
                                          "initial sync, running"):
        paused.act("pause", by="ana")
    with pytest.raises(ModeRefused, match="resume is allowed only from error, paused"):
        MapState(map="customers").act("resume", by="ana")


def test_a_map_nobody_moved_runs() -> None:
    assert MapState(map="customers").mode == "running"


@pytest.mark.parametrize(("mode", "live", "from_catch_up"), [
    ("running", "apply", "apply"), ("initial_sync", "apply", "apply"), ("paused", "park", "park"),
    ("error", "park", "park"), ("catching_up", "park", "apply"), ("stopped", "drop", "drop"),
    ("not_started", "drop", "drop")])
def test_admission_per_mode(mode: str, live: str, from_catch_up: str) -> None:
    state = MapState(map="customers", mode=mode)  # type: ignore[arg-type]
    assert state.admission() == live
    assert state.admission(catching_up_delivery=True) == from_catch_up


def test_catch_up_progress_starts_on_resume_and_ends_on_running() -> None:
    paused = MapState(map="customers", mode="paused", catch_up=CatchUp(parked=9, sent=9, started_at=T0))
    catching, _ = paused.move("catching_up", by="ana", reason="resume", now=T0 + timedelta(hours=1))
    assert catching.catch_up == CatchUp(started_at=T0 + timedelta(hours=1))
    sent = MapState(map="customers", mode="catching_up", catch_up=CatchUp(parked=50, sent=50, started_at=T0))
    running, _ = sent.move("running", by="catch-up", reason="done", now=T0 + timedelta(seconds=10))
    assert running.catch_up.finished_at == T0 + timedelta(seconds=10) and running.catch_up.rate() == 5.0
