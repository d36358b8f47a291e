"""Alert rules over windows: readings per scope, firing, holding, resolving, cool-down, pause and resume, and
several instances evaluating at once (in-memory fakes of the alert store, the figures and the channels)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import BadInput
from core.ops.alerts.evaluate import AlertState, change, notify_due, readings
from core.ops.alerts.rules import DEFAULT_RULES, AlertRule
from core.ops.alerts.service import Alerts, rule_from
from core.ops.metrics import MapFigures, Metrics, QueueFigures, SideFigures
from core.ops.notify import AlertNotice
from core.store.alerts import HistoryEntry, RuleChanged, RuleNotFound
from core.store.errors import OpenError
from core.store.metrics import Deployment
from core.sync.modes import MapState, ModeRefused

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def row(map_name: str = "customers", direction: str = "to_dataverse", **figures: Any) -> MapFigures:
    base: dict[str, Any] = dict(map=map_name, direction=direction, mode="running", applied=0, applied_per_s=0.0,
                                failed=0, skipped=0, error_rate_pct=None, lag_p50_s=None, lag_p95_s=None,
                                queue_wait_max_s=None, parked_records=0, oldest_parked_age_s=None, backlog_age_s=None,
                                open_errors=0, new_errors=0, last_applied_at=None)
    return MapFigures.model_validate({**base, **figures})


def metrics(*rows: MapFigures, throttled: dict[str, float] | None = None, deployment: str = "ok") -> Metrics:
    return Metrics(at=NOW, window_minutes=15, maps=list(rows),
                   sides=[SideFigures(side=s, throttled=0, throttled_per_min=(throttled or {}).get(s, 0.0))
                          for s in ("dataverse", "fno")],
                   open_errors=0, queue=QueueFigures(depth=None, note=""), deployment=Deployment(status=deployment))


def error(map_name: str = "customers", minutes_ago: float = 1, category: str = "application",
          source: str = "fno") -> OpenError:
    return OpenError(map=map_name, source=source, category=category, first_at=NOW - timedelta(minutes=minutes_ago))


def rule(**fields: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "r", "metric": "errors", "threshold": 3, "op": ">=", **fields})


# -- readings ---------------------------------------------------------------------------------------------
def test_errors_count_only_open_errors_first_failed_inside_the_window_of_the_category() -> None:
    figures = metrics(row("customers"), row("vendors"))
    errors = [error(minutes_ago=1), error(minutes_ago=14), error(minutes_ago=16), error(category="system"),
              error("vendors")]
    assert readings(rule(window_minutes=15), figures, errors, NOW) == {"customers": 3.0, "vendors": 1.0}
    assert readings(rule(window_minutes=15, category="application"), figures, errors, NOW) == {
        "customers": 2.0, "vendors": 1.0}
    assert readings(rule(window_minutes=5), figures, errors, NOW)["customers"] == 2.0


def test_scope_narrows_to_a_map_and_a_direction() -> None:
    figures = metrics(row("customers", "to_dataverse", lag_p95_s=400.0), row("customers", "to_fno", lag_p95_s=5.0),
                      row("vendors", "to_dataverse", lag_p95_s=1.0))
    lag = {"metric": "lag_p95_s", "threshold": 300}
    assert readings(rule(**lag), figures, [], NOW) == {"customers": 400.0, "vendors": 1.0}  # worst direction
    assert readings(rule(**lag, scope={"direction": "to_fno"}), figures, [], NOW) == {"customers": 5.0}
    assert readings(rule(**lag, scope={"map": "vendors"}), figures, [], NOW) == {"vendors": 1.0}
    errors = [error(source="dataverse"), error(source="fno")]
    assert readings(rule(scope={"direction": "to_fno"}), figures, errors, NOW) == {"customers": 1.0}


def test_counts_add_up_over_directions_and_rates_are_recomputed() -> None:
    figures = metrics(row(applied=90, failed=10, parked_records=2, open_errors=1),
                      row(direction="to_fno", applied=0, failed=0, parked_records=3, open_errors=2))
    assert readings(rule(metric="error_rate_pct", threshold=5), figures, [], NOW) == {"customers": 10.0}
    assert readings(rule(metric="parked_records", threshold=1), figures, [], NOW) == {"customers": 5.0}
    assert readings(rule(metric="dead_letters", threshold=0), figures, [], NOW) == {"customers": 3.0}


def test_engine_wide_figures_have_their_own_subjects() -> None:
    figures = metrics(row(), throttled={"fno": 40.0, "dataverse": 2.0}, deployment="failed")
    assert readings(rule(metric="throttled_per_min", threshold=30), figures, [], NOW) == {
        "dataverse": 2.0, "fno": 40.0}
    assert readings(rule(metric="throttled_per_min", threshold=30, scope={"direction": "to_fno"}), figures, [],
                    NOW) == {"fno": 40.0}
    assert readings(rule(metric="deployment_failed", threshold=0, op=">"), figures, [], NOW) == {"*": 1.0}


# -- the state machine -----------------------------------------------------------------------------------
def state(status: str = "firing", **fields: Any) -> AlertState:
    return AlertState.model_validate({"rule": "r", "subject": "customers", "state": status, "since": NOW,
                                      "value": 5.0, "threshold": 3, "condition": "c", **fields})


def test_fires_once_holds_then_resolves() -> None:
    r = rule()
    assert change(r, None, 3.0) == "fired"
    assert change(r, None, 2.0) is None
    assert change(r, None, None) is None  # no figure: nothing breached
    assert change(r, state(), 9.0) is None  # still firing: no second firing
    assert change(r, state(), 2.0) == "resolved"
    assert change(r, state("ok"), 3.0) == "fired"
    assert change(r.model_copy(update={"enabled": False}), state(), 9.0) == "resolved"


def test_cool_down_counts_from_the_last_notification() -> None:
    r = rule(cooldown_minutes=30)
    assert notify_due(r, None, NOW)
    assert not notify_due(r, state("ok", last_notified_at=NOW - timedelta(minutes=29)), NOW)
    assert notify_due(r, state("ok", last_notified_at=NOW - timedelta(minutes=30)), NOW)
    assert not notify_due(rule(notify=False), None, NOW)


@pytest.mark.parametrize(("fields", "field"), [
    ({"pause": True, "metric": "throttled_per_min"}, "pause"),
    ({"resume_when_clear": True}, "resume_when_clear"),
    ({"metric": "lag_p95_s", "category": "application"}, "category"),
    ({"metric": "deployment_failed", "scope": {"map": "customers"}}, "scope.map"),
    ({"threshold": -1}, "threshold"),
    ({"window_minutes": 0.5}, "window_minutes"),
    ({"metric": "nonsense"}, "metric"),
    ({"recipients": ["not an address"]}, "recipients"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_rule_is_refused_naming_what_is_wrong(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInput) as refused:
        rule_from("r", {"metric": "errors", "threshold": 3, **fields})
    assert field in str(refused.value)


def test_the_shipped_rules_are_valid_and_named_once() -> None:
    names = [r.name for r in DEFAULT_RULES]
    assert len(names) == len(set(names)) >= 5
    first = DEFAULT_RULES[0]
    assert (first.metric, first.op, first.threshold, first.window_minutes, first.pause) == (
        "errors", ">=", 10, 15, False)  # told, not acted on, until someone says so


# -- the service, with fakes of its ports ------------------------------------------------------------------
class FakeStore:
    """The alert store's contract: rules by name, states written only over the etag they were read with."""

    def __init__(self) -> None:
        self.rule_rows: dict[str, tuple[AlertRule, str]] = {}
        self.seeded = False
        self.state_rows: dict[tuple[str, str], AlertState] = {}
        self.entries: list[HistoryEntry] = []
        self._etags = itertools.count(1)

    async def rules(self, defaults: Any = ()) -> list[tuple[AlertRule, str]]:
        if not self.seeded:
            self.seeded = True
            for r in defaults:
                self.rule_rows.setdefault(r.name, (r, str(next(self._etags))))
        return sorted(self.rule_rows.values(), key=lambda pair: pair[0].name)

    async def rule(self, name: str) -> tuple[AlertRule, str]:
        if name not in self.rule_rows:
            raise RuleNotFound(name)
        return self.rule_rows[name]

    async def put_rule(self, r: AlertRule, *, if_match: str | None = None) -> tuple[str, bool]:
        known = self.rule_rows.get(r.name)
        if if_match is not None and (known is None or if_match not in ("*", known[1])):
            raise RuleChanged(r.name)
        etag = str(next(self._etags))
        self.rule_rows[r.name] = (r, etag)
        return etag, known is None

    async def delete_rule(self, name: str) -> None:
        self.rule_rows.pop(name)

    async def states(self) -> list[AlertState]:
        return list(self.state_rows.values())

    async def save_state(self, s: AlertState) -> AlertState | None:
        current = self.state_rows.get((s.rule, s.subject))
        if (current.etag if current else None) != s.etag:
            return None
        saved = s.model_copy(update={"etag": str(next(self._etags))})
        self.state_rows[(s.rule, s.subject)] = saved
        return saved

    async def delete_state(self, s: AlertState) -> None:
        self.state_rows.pop((s.rule, s.subject), None)

    async def add_history(self, entry: HistoryEntry) -> None:
        self.entries.insert(0, entry)


class FakeModes:
    def __init__(self) -> None:
        self.modes: dict[str, MapState] = {}
        self.calls: list[tuple[str, str, str]] = []

    async def state(self, map_name: str) -> MapState:
        return self.modes.get(map_name) or MapState(map=map_name)

    async def act(self, map_name: str, action: Any, *, by: str, reason: str = "") -> MapState:
        self.calls.append((map_name, action, by))
        current = await self.state(map_name)
        target = {"pause": "paused", "resume": "catching_up"}[action]
        if current.mode == target:
            raise ModeRefused(map_name, current.mode, action)
        self.modes[map_name] = replace(current, mode=target, by=by)
        return self.modes[map_name]


class FakeChannel:
    def __init__(self, name: str = "webhook", fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.sent: list[AlertNotice] = []

    async def send(self, notice: AlertNotice, *, recipients: list[str] | None = None) -> None:
        if self.fail:
            from core.ops.notify import NotifyRefused
            raise NotifyRefused("refused")
        self.sent.append(notice)


class World:
    def __init__(self, *rules: AlertRule) -> None:
        self.store = FakeStore()
        self.store.seeded = True
        for r in rules:
            self.store.rule_rows[r.name] = (r, "0")
        self.figures = metrics(row())
        self.errors: list[OpenError] = []
        self.modes = FakeModes()
        self.channel = FakeChannel()

    def alerts(self, channel: FakeChannel | None = None) -> Alerts:
        async def figures(window: timedelta) -> Metrics:
            return self.figures

        async def errors() -> list[OpenError]:
            return self.errors

        return Alerts(self.store, figures=figures, open_errors=errors, modes=self.modes,  # type: ignore[arg-type]
                      channels=[channel or self.channel], notify_attempts=1, notify_backoff_seconds=0)


async def test_a_burst_fires_pauses_and_notifies_once_then_resolves_and_resumes() -> None:
    world = World(rule(name="errs", pause=True, resume_when_clear=True, threshold=3))
    alerts = world.alerts()
    world.errors = [error() for _ in range(4)]
    report = await alerts.evaluate(NOW)
    assert [(f.rule, f.subject, f.value) for f in report.fired] == [("errs", "customers", 4.0)]
    assert world.modes.calls == [("customers", "pause", "alert errs")]
    assert [n.kind for n in world.channel.sent] == ["fired"] and world.channel.sent[0].value == 4.0
    assert "paused map customers" in world.channel.sent[0].actions

    world.errors.append(error())  # still firing: nothing new
    assert (await alerts.evaluate(NOW + timedelta(minutes=1))).fired == []
    assert len(world.channel.sent) == 1 and len(world.store.entries) == 1

    world.errors = []  # fixed and resubmitted: the errors are closed
    report = await alerts.evaluate(NOW + timedelta(minutes=2))
    assert [f.subject for f in report.resolved] == ["customers"]
    assert world.modes.calls[-1] == ("customers", "resume", "alert errs")
    assert [n.kind for n in world.channel.sent] == ["fired", "resolved"]
    assert [e.kind for e in world.store.entries] == ["resolved", "fired"]
    assert world.store.entries[1].notifications == {"webhook": "sent"}


async def test_a_map_someone_else_moved_is_not_resumed() -> None:
    world = World(rule(name="errs", pause=True, resume_when_clear=True))
    alerts = world.alerts()
    world.errors = [error() for _ in range(3)]
    await alerts.evaluate(NOW)
    world.modes.modes["customers"] = replace(world.modes.modes["customers"], by="operator")
    world.errors = []
    await alerts.evaluate(NOW + timedelta(minutes=1))
    assert [c[1] for c in world.modes.calls] == ["pause"]
    assert "not paused by this alert" in world.store.entries[0].actions[0]


async def test_firing_again_within_the_cool_down_is_recorded_but_not_sent() -> None:
    world = World(rule(cooldown_minutes=30))
    alerts = world.alerts()
    for minute, count in ((0, 3), (1, 0), (2, 3), (40, 0), (41, 3)):
        world.errors = [error(minutes_ago=-minute) for _ in range(count)]
        await alerts.evaluate(NOW + timedelta(minutes=minute))
    fired = [e for e in reversed(world.store.entries) if e.kind == "fired"]
    assert [e.notifications for e in fired] == [
        {"webhook": "sent"}, {"all": "suppressed: cool-down"}, {"webhook": "sent"}]
    # a resolution is told when its firing was: the suppressed one's is not
    assert [n.kind for n in world.channel.sent] == ["fired", "resolved", "fired"]


async def test_instances_evaluating_at_once_act_once() -> None:
    world = World(rule(pause=True))
    world.errors = [error() for _ in range(3)]
    first, second = world.alerts(), world.alerts()
    stale = await world.store.states()  # both read "no alert yet" ...
    assert stale == []
    results = [await first.evaluate(NOW)]

    async def as_read_before() -> list[AlertState]:
        return stale

    world.store.states = as_read_before  # type: ignore[method-assign]
    results.append(await second.evaluate(NOW))  # ... so only the etag guard stops the second
    assert sum(len(r.fired) for r in results) == 1
    assert len(world.channel.sent) == 1 and len(world.modes.calls) == 1


async def test_a_failing_channel_is_reported_and_tried_again_at_the_next_evaluation() -> None:
    world = World(rule())
    broken = FakeChannel(fail=True)
    alerts = world.alerts(broken)
    world.errors = [error() for _ in range(3)]
    await alerts.evaluate(NOW)
    assert world.store.entries[0].notifications["webhook"].startswith("failed")
    broken.fail = False
    await alerts.evaluate(NOW + timedelta(minutes=1))
    assert [n.kind for n in broken.sent] == ["fired"]
    assert world.store.state_rows[("r", "customers")].notifications == {"webhook": "sent"}


async def test_a_rule_edit_counts_from_the_next_evaluation_and_a_deleted_rule_resolves() -> None:
    world = World(rule(threshold=10))
    alerts = world.alerts()
    world.errors = [error() for _ in range(3)]
    assert (await alerts.evaluate(NOW)).fired == []
    await alerts.put_rule("r", {"metric": "errors", "threshold": 2})
    assert [f.subject for f in (await alerts.evaluate(NOW)).fired] == ["customers"]
    await world.store.delete_rule("r")
    report = await alerts.evaluate(NOW + timedelta(minutes=1))
    assert [f.rule for f in report.resolved] == ["r"]
    assert world.store.entries[0].actions == ["resolved because its rule was deleted"]
