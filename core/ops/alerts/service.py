"""Alerts: the rules (read at every evaluation, so an edit counts from the next one), their evaluation every
minute (functions/alerts.py) or on request, and what a change of state does: history, notification (with a
cool-down), pausing the map and resuming it when the rule says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from core.errors import BadInput
from core.ops.alerts.evaluate import AlertState, Change, change, notify_due, readings
from core.ops.alerts.rules import DEFAULT_RULES, PER_MAP, AlertRule
from core.ops.metrics import Metrics
from core.ops.notify import AlertNotice, Channel, deliver
from core.store.alerts import AlertStore, HistoryEntry
from core.store.errors import OpenError
from core.sync.modes import MapState, ModeRefused

log = logging.getLogger(__name__)


class MapPauser(Protocol):
    async def act(self, map_name: str, action: Any, *, by: str, reason: str = "") -> MapState: ...

    async def state(self, map_name: str) -> MapState: ...


class Fired(BaseModel):
    rule: str
    subject: str
    value: float | None


class Evaluation(BaseModel):
    at: datetime
    rules: int
    fired: list[Fired]
    resolved: list[Fired]


def rule_from(name: str, body: object) -> AlertRule:
    """A rule from an API body (its name from the path); BadInput naming the first wrong field."""
    if not isinstance(body, dict):
        raise BadInput("body", "a rule is a JSON object")
    if body.get("name", name) != name:
        raise BadInput("name", f"the body names rule {body.get('name')!r}, the path {name!r}")
    try:
        return AlertRule.model_validate({**body, "name": name})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadInput(field, f"{field}: {first['msg']}") from None


class Alerts:
    def __init__(self, store: AlertStore, *, figures: Callable[[timedelta], Awaitable[Metrics]],
                 open_errors: Callable[[], Awaitable[list[OpenError]]], modes: MapPauser | None,
                 channels: Sequence[Channel], console_url: str | None = None,
                 defaults: Sequence[AlertRule] = DEFAULT_RULES, notify_attempts: int = 3,
                 notify_backoff_seconds: float = 1.0) -> None:
        self.store = store
        self.figures = figures
        self.open_errors = open_errors
        self.modes = modes
        self.channels = list(channels)
        self.console_url = console_url
        self.defaults = defaults
        self.notify_attempts = notify_attempts
        self.notify_backoff_seconds = notify_backoff_seconds

    # -- rules ----------------------------------------------------------------------------------------------
    async def rules(self) -> list[AlertRule]:
        return [rule for rule, _ in await self.store.rules(self.defaults)]

    async def put_rule(self, name: str, body: object, *, if_match: str | None = None) -> tuple[AlertRule, str, bool]:
        rule = rule_from(name, body)
        await self.store.rules(self.defaults)  # the shipped rules go in first, or they would later overwrite it
        etag, created = await self.store.put_rule(rule, if_match=if_match)
        return rule, etag, created

    # -- evaluation -----------------------------------------------------------------------------------------
    async def evaluate(self, now: datetime | None = None) -> Evaluation:
        now = now or datetime.now(UTC)
        rules = await self.rules()
        live = [r for r in rules if r.enabled]
        windows = sorted({r.window_minutes for r in live})
        figures, open_errors, states = await asyncio.gather(
            asyncio.gather(*(self.figures(timedelta(minutes=w)) for w in windows)), self.open_errors(),
            self.store.states())
        by_window = dict(zip(windows, figures, strict=True))
        known = {(s.rule, s.subject): s for s in states}
        report = Evaluation(at=now, rules=len(live), fired=[], resolved=[])
        seen: set[tuple[str, str]] = set()
        for rule in live:
            values = readings(rule, by_window[rule.window_minutes], open_errors, now)
            for subject, value in values.items():
                seen.add((rule.name, subject))
                await self._step(rule, known.get((rule.name, subject)), subject, value, now, report)
        by_name = {r.name: r for r in rules}
        for (name, subject), state in known.items():
            if (name, subject) in seen or state.state != "firing":
                if name not in by_name and state.state != "firing":
                    await self.store.delete_state(state)
                continue
            known_rule = by_name.get(name)
            why = ("its rule was deleted" if known_rule is None else "its rule is disabled"
                   if not known_rule.enabled else f"{subject} has no figures any more")
            await self._resolve(known_rule, state, None, now, report, quiet=why)
        return report

    async def _step(self, rule: AlertRule, state: AlertState | None, subject: str, value: float | None,
                    now: datetime, report: Evaluation) -> None:
        moved = change(rule, state, value)
        if moved == "fired":
            await self._fire(rule, state, subject, value, now, report)
        elif moved == "resolved" and state is not None:
            await self._resolve(rule, state, value, now, report)
        elif state is not None and state.state == "firing" and _failed(state.notifications):
            await self._retry_notifications(rule, state, value, now)

    async def _fire(self, rule: AlertRule, state: AlertState | None, subject: str, value: float | None,
                    now: datetime, report: Evaluation) -> None:
        firing = AlertState(rule=rule.name, subject=subject, state="firing", since=now, value=value,
                            threshold=rule.threshold, condition=rule.condition(),
                            last_notified_at=state.last_notified_at if state else None,
                            etag=state.etag if state else None)
        saved = await self.store.save_state(firing)
        if saved is None:
            return  # another instance recorded this firing first and acts on it
        report.fired.append(Fired(rule=rule.name, subject=subject, value=value))
        actions: list[str] = []
        if rule.pause and rule.metric in PER_MAP and self.modes is not None:
            paused = await self._pause(rule, subject, value)
            actions.append(paused)
            saved = saved.model_copy(update={"paused_map": paused.startswith("paused")})
        if notify_due(rule, state, now):
            notices = await self._notify(rule, saved, "fired", value, now, actions, self.channels)
            saved = saved.model_copy(update={"notifications": notices, "last_notified_at": now
                                             if any(v == "sent" for v in notices.values()) else saved.last_notified_at})
        elif rule.notify:
            saved = saved.model_copy(update={"notifications": {"all": "suppressed: cool-down"}})
        await self.store.save_state(saved)
        await self.store.add_history(HistoryEntry(at=now, rule=rule.name, subject=subject, kind="fired", value=value,
                                                  threshold=rule.threshold, condition=rule.condition(),
                                                  actions=actions, notifications=saved.notifications))
        log.warning("alert %s fired for %s: %s (value %s)", rule.name, subject, rule.condition(), value)

    async def _resolve(self, rule: AlertRule | None, state: AlertState, value: float | None, now: datetime,
                       report: Evaluation, *, quiet: str | None = None) -> None:
        ok = state.model_copy(update={"state": "ok", "since": now, "value": value, "paused_map": False,
                                      "notifications": {}, **({"threshold": rule.threshold,
                                                               "condition": rule.condition()} if rule else {})})
        saved = await self.store.save_state(ok)
        if saved is None:
            return
        report.resolved.append(Fired(rule=state.rule, subject=state.subject, value=value))
        actions = [f"resolved because {quiet}"] if quiet else []
        if rule is not None and quiet is None and state.paused_map and rule.resume_when_clear and self.modes:
            actions.append(await self._resume(rule, state.subject))
        notices: dict[str, str] = {}
        if rule is not None and quiet is None and rule.notify and "sent" in state.notifications.values():
            notices = await self._notify(rule, saved, "resolved", value, now, actions, self.channels)
            await self.store.save_state(saved.model_copy(update={"notifications": notices}))
        # the rule as it is now (an edit may be what resolved it), else as it was when it fired
        threshold, condition = (rule.threshold, rule.condition()) if rule is not None else (state.threshold,
                                                                                             state.condition)
        await self.store.add_history(HistoryEntry(at=now, rule=state.rule, subject=state.subject, kind="resolved",
                                                  value=value, threshold=threshold, condition=condition,
                                                  actions=actions, notifications=notices))
        log.info("alert %s resolved for %s (value %s)", state.rule, state.subject, value)

    async def _retry_notifications(self, rule: AlertRule, state: AlertState, value: float | None,
                                   now: datetime) -> None:
        """A channel that failed when the alert fired is tried again at each evaluation until it answers."""
        failed = [c for c in self.channels if state.notifications.get(c.name, "").startswith("failed")]
        if not failed:
            return
        notices = await self._notify(rule, state, "fired", value, now, [], failed)
        merged = {**state.notifications, **notices}
        sent = any(v == "sent" for v in notices.values())
        await self.store.save_state(state.model_copy(update={
            "notifications": merged, "last_notified_at": now if sent else state.last_notified_at}))

    async def _notify(self, rule: AlertRule, state: AlertState, kind: Change, value: float | None, now: datetime,
                      actions: list[str], channels: Sequence[Channel]) -> dict[str, str]:
        if not channels:
            return {"all": "failed: no notification channel is configured (ALERT_WEBHOOK_URL, ALERT_SMTP_HOST)"}
        notice = AlertNotice(kind=kind, rule=rule.name, description=rule.description, subject=state.subject,
                             direction=rule.scope.direction, metric=rule.metric, condition=rule.condition(),
                             value=value, threshold=rule.threshold, window_minutes=rule.window_minutes, at=now,
                             actions=actions, console_url=self.console_url)
        return await deliver(notice, list(channels), recipients=rule.recipients or None, attempts=self.notify_attempts,
                             backoff_seconds=self.notify_backoff_seconds)

    async def _pause(self, rule: AlertRule, map_name: str, value: float | None) -> str:
        assert self.modes is not None
        try:
            await self.modes.act(map_name, "pause", by=f"alert {rule.name}",
                                 reason=f"{rule.condition()}: {value:g}" if value is not None else rule.condition())
        except ModeRefused as error:
            return f"map {map_name} not paused: {error}"
        return f"paused map {map_name}"

    async def _resume(self, rule: AlertRule, map_name: str) -> str:
        assert self.modes is not None
        state = await self.modes.state(map_name)
        if state.mode != "paused" or state.by != f"alert {rule.name}":
            return f"map {map_name} left {state.mode} (not paused by this alert any more)"
        try:
            await self.modes.act(map_name, "resume", by=f"alert {rule.name}", reason="the alert cleared")
        except ModeRefused as error:
            return f"map {map_name} not resumed: {error}"
        return f"resumed map {map_name} (catching up)"


def _failed(notifications: dict[str, str]) -> bool:
    return any(v.startswith("failed") for v in notifications.values())
