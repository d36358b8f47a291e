"""Metrics and alerts over the whole local stack: a real SMTP server (aiosmtpd) and an HTTP receiver in the test
take the notifications; changes go through the simulators, the emulator and the host as a user's would.

- metrics: after a known sequence of changes (creates, a pause with parked changes, a refused change) the
  figures say what happened, the Prometheus text parses with prometheus-client and agrees with the JSON;
- alerts: a burst of refused changes fires the error-count rule (edited through the API first, taking effect at
  the next evaluation), pauses the map and sends one e-mail and one webhook with the documented body; fixing
  and resubmitting resolves it, resumes the map, and tells both channels once more.

Its own Azurite: the alerts pause maps and the rules are shared state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.ops.notify import AlertNotice
from tests.e2e.conftest import Stack, eventually, new_customer, running_stack
from tests.e2e.test_cli import fix_quietly, refuse_a_change
from tests.fixtures.devhost import RunningHost
from tests.fixtures.http_receiver import HttpReceiver, serve
from tests.fixtures.smtp import Mailbox, smtp_server

HOOK = "/alerts-hook"


@dataclass
class AlertStack:
    stack: Stack
    mailbox: Mailbox
    hook: HttpReceiver

    def get(self, path: str, **params: Any) -> Any:
        response = self.stack.admin.get(f"/api/manage/v1/{path}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def evaluate(self) -> dict[str, Any]:
        response = self.stack.admin.post("/api/manage/v1/alerts/evaluate")
        assert response.status_code == 200, response.text
        return response.json()

    def figures(self, map_name: str, direction: str, window: float = 60) -> dict[str, Any]:
        body = self.get("metrics", window_minutes=window)
        return next(row for row in body["maps"] if row["map"] == map_name and row["direction"] == direction)


@pytest.fixture(scope="module")
def alerting(own_azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost]) -> Iterator[AlertStack]:
    with smtp_server() as (controller, mailbox), serve(HttpReceiver()) as hook, running_stack(
            own_azurite, servicebus_emulator, devhost, dataverse_flags=(),
            ALERT_SMTP_HOST="127.0.0.1", ALERT_SMTP_PORT=str(controller.port), ALERT_SMTP_TLS="none",
            ALERT_EMAIL_FROM="dualwrite@example.test", ALERT_EMAIL_TO="ops@example.test",
            ALERT_WEBHOOK_URL=hook.url(HOOK), METRICS_FLUSH_SECONDS="1",
            # only the test evaluates: the minute timer could fire or resolve between a change and its evaluate
            **{"AzureWebJobs.alerts_timer.Disabled": "true"}) as stack:
        yield AlertStack(stack, mailbox, hook)


def test_metrics_follow_a_known_sequence_of_changes(alerting: AlertStack) -> None:
    stack = alerting.stack
    before = alerting.figures("customers", "to_dataverse")
    prefix = f"M{uuid.uuid4().hex[:4].upper()}"
    started = time.monotonic()
    for n in range(3):
        new_customer(stack, f"{prefix}-{n}")
    elapsed = time.monotonic() - started
    after = eventually(lambda: (f := alerting.figures("customers", "to_dataverse"))["applied"] >= before["applied"] + 3
                       and f, what="three applied changes counted")
    assert after["applied"] == before["applied"] + 3
    assert after["last_applied_at"] is not None
    assert after["lag_p50_s"] is not None and 0 < after["lag_p50_s"] <= after["lag_p95_s"] <= elapsed * 1.5 + 1
    assert after["open_errors"] == before["open_errors"] and after["mode"] == "running"

    # paused: two changes wait parked, and that is the backlog
    assert stack.admin.post("/api/manage/v1/modes/customers/pause", json={"reason": "metrics test"}).status_code == 200
    for n in range(2):
        response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{prefix}-{n}')",
                                  params={"cross-company": "true"}, json={"PrimaryContactPhone": f"+1 555 010{n}"})
        assert response.status_code == 204, response.text
    parked = eventually(lambda: (f := alerting.figures("customers", "to_dataverse"))["parked_records"] == 2 and f,
                        what="two parked records counted")
    assert parked["mode"] == "paused" and parked["oldest_parked_age_s"] >= 0
    assert parked["backlog_age_s"] >= parked["oldest_parked_age_s"]
    assert stack.admin.post("/api/manage/v1/modes/customers/resume").status_code in (200, 202)
    eventually(lambda: alerting.figures("customers", "to_dataverse")["parked_records"] == 0, timeout=60,
               what="the parked changes caught up")

    # refused: one open error, new in the window, and an error rate
    refuse_a_change(stack, f"{prefix}-2")
    failed = eventually(lambda: (f := alerting.figures("customers", "to_dataverse"))["open_errors"] == (
        before["open_errors"] + 1) and f["failed"] > before["failed"] and f, what="the refused change counted")
    assert failed["new_errors"] == before["new_errors"] + 1 and failed["error_rate_pct"] > 0

    # the Prometheus text parses with a real parser and says what the JSON says
    response = stack.admin.get("/api/manage/v1/metrics/prometheus", params={"window_minutes": 60})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    figures = alerting.figures("customers", "to_dataverse")
    labels = {"map": "customers", "direction": "to_dataverse"}
    applied = [s.value for s in families["dualwrite_applied"].samples if s.labels == labels]
    assert applied == [figures["applied"]]
    assert [s.value for s in families["dualwrite_open_errors"].samples if s.labels == labels] == [
        figures["open_errors"]]
    assert {s.labels["quantile"] for s in families["dualwrite_lag_seconds"].samples if s.labels["map"] == "customers"
            } == {"0.5", "0.95"}
    assert [s.labels["mode"] for s in families["dualwrite_map_mode"].samples if s.labels["map"] == "customers"] == [
        figures["mode"]]

    # clear the error for the next test: fix it and resubmit it
    fix_quietly(stack, f"{prefix}-2", "1000")
    assert stack.admin.post("/api/manage/v1/errors/resubmit", json={"map": "customers"}).status_code == 202


def test_a_burst_of_refused_changes_fires_pauses_notifies_once_and_resolves_after_resubmit(
        alerting: AlertStack) -> None:
    stack, mailbox, hook = alerting.stack, alerting.mailbox, alerting.hook
    shipped = alerting.get("alerts/rules")["rules"]
    assert "application-errors" in {r["name"] for r in shipped}
    for rule in shipped:  # only this test's rule, so what is sent is its alone
        assert stack.admin.delete(f"/api/manage/v1/alerts/rules/{rule['name']}").status_code == 204
    rule = {"metric": "errors", "category": "application", "op": ">=", "threshold": 10, "window_minutes": 15,
            "scope": {"map": "customers"}, "pause": True, "resume_when_clear": True, "cooldown_minutes": 60,
            "description": "a burst of refused changes"}
    created = stack.admin.put("/api/manage/v1/alerts/rules/burst", json=rule)
    assert created.status_code == 201, created.text
    mails_before, hooks_before = len(mailbox.envelopes), len(hook.at(HOOK))

    prefix = f"A{uuid.uuid4().hex[:4].upper()}"
    accounts = [f"{prefix}-{n}" for n in range(3)]
    for account in accounts:
        new_customer(stack, account)
    for account in accounts:
        refuse_a_change(stack, account)
    assert alerting.evaluate()["fired"] == []  # 3 errors, the rule wants 10

    # the rule edited through the API counts from the next evaluation, no restart
    edited = stack.admin.put("/api/manage/v1/alerts/rules/burst", json={**rule, "threshold": 3},
                             headers={"If-Match": created.headers["ETag"]})
    assert edited.status_code == 200, edited.text
    fired = alerting.evaluate()["fired"]
    assert fired == [{"rule": "burst", "subject": "customers", "value": 3.0}]
    mode = alerting.get("modes/customers")
    assert (mode["mode"], mode["by"]) == ("paused", "alert burst")

    mails = mailbox.wait_for(mails_before + 1)
    posts = hook.wait_for(HOOK, hooks_before + 1)
    assert len(mails) == mails_before + 1 and len(posts) == hooks_before + 1
    mail = mails[-1]
    assert "FIRED burst" in mail["Subject"] and mail["To"] == "ops@example.test"
    notice = AlertNotice.model_validate(posts[-1].body)
    assert (notice.v, notice.kind, notice.rule, notice.subject, notice.metric, notice.value, notice.threshold) == (
        1, "fired", "burst", "customers", "errors", 3.0, 3.0)
    assert "paused map customers" in notice.actions

    # evaluated again while it still holds: nothing is sent twice
    assert alerting.evaluate()["fired"] == []
    time.sleep(1)
    assert len(mailbox.envelopes) == mails_before + 1 and len(hook.at(HOOK)) == hooks_before + 1
    alerts = {(a["rule"], a["subject"]): a for a in alerting.get("alerts")["alerts"]}
    assert alerts[("burst", "customers")]["state"] == "firing"
    assert alerts[("burst", "customers")]["notifications"] == {"email": "sent", "webhook": "sent"}

    # fixed and resubmitted: the errors close, the alert resolves and the map catches up
    for account in accounts:
        fix_quietly(stack, account, "1000")
    resubmitted = stack.admin.post("/api/manage/v1/errors/resubmit", json={"map": "customers"})
    assert resubmitted.status_code == 202 and resubmitted.json()["resubmitted"] >= 3, resubmitted.text
    resolved = alerting.evaluate()["resolved"]
    assert [(r["rule"], r["subject"]) for r in resolved] == [("burst", "customers")]
    assert alerting.get("modes/customers")["mode"] in ("catching_up", "running")
    for account in accounts:
        eventually(lambda a=account: (row := stack.account(a)) and Decimal(str(row["creditlimit"])) == 1000,
                   timeout=90, what=f"the fixed credit limit of {account} reaching Dataverse")
    mails = mailbox.wait_for(mails_before + 2)
    assert "RESOLVED burst" in mails[-1]["Subject"]
    assert AlertNotice.model_validate(hook.wait_for(HOOK, hooks_before + 2)[-1].body).kind == "resolved"
    history = alerting.get("alerts/history", rule="burst")["entries"]
    assert [e["kind"] for e in history] == ["resolved", "fired"]
    assert history[1]["value"] == 3.0 and history[1]["notifications"] == {"email": "sent", "webhook": "sent"}
    assert any(a.startswith("resumed map customers") for a in history[0]["actions"])
