"""Alert notifications (core.ops.notify): the notice, the three webhook bodies over httpx.MockTransport, the
e-mail message, deliver's retries over a fake channel, and the channels the ALERT_* settings build."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from core.ops.notify import (
    AlertNotice,
    EmailChannel,
    NotifyRefused,
    NotifyTransient,
    WebhookChannel,
    channels_from_settings,
    deliver,
    safe_url,
)
from core.settings import load_settings
from tests.unit.test_settings import VALID

AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def notice(**changes: Any) -> AlertNotice:
    fields: dict[str, Any] = dict(
        kind="fired", rule="errors-15min", description="Too many failed changes", subject="customers",
        direction="to_dataverse", metric="errors", condition="errors > 10 in 15 min", value=12.0, threshold=10.0,
        window_minutes=15.0, at=AT, actions=["paused map customers"],
        console_url="https://dw.example.com/api/console#/maps/customers")
    fields.update(changes)
    return AlertNotice(**fields)


# ---- the notice ----

def test_title_names_kind_rule_subject_condition_and_value() -> None:
    assert notice().title == ("[dual-write] FIRED errors-15min on customers (to_dataverse): "
                              "errors > 10 in 15 min (now 12)")
    resolved = notice(kind="resolved", subject="*", direction=None, value=None, rule="lag\nhigh")
    assert resolved.title == "[dual-write] RESOLVED lag high on all maps: errors > 10 in 15 min"


def test_at_must_carry_a_zone_and_is_kept_in_utc() -> None:
    with pytest.raises(ValidationError):
        notice(at=datetime(2025, 3, 4, 5, 6, 7))
    assert notice(at=AT.astimezone(timezone(timedelta(hours=2)))).at == AT
    assert notice().at.tzinfo == UTC


def test_text_carries_every_fact_the_actions_and_the_console() -> None:
    text = notice().text()
    assert text.startswith(notice().title + "\n")
    for piece in ("Too many failed changes", "customers", "to_dataverse", "errors > 10 in 15 min", "12", "10",
                  "15 min", "2025-03-04 05:06:07 UTC", "- paused map customers",
                  "https://dw.example.com/api/console#/maps/customers"):
        assert piece in text


# ---- webhook bodies ----

def posting(status: int = 200, **headers: str) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers=headers, text="" if status < 300 else "invalid_payload")

    return httpx.AsyncClient(transport=httpx.MockTransport(answer)), seen


async def body_of(format: Any, n: AlertNotice) -> Any:
    client, seen = posting()
    async with client:
        await WebhookChannel("https://hooks.example.com/x?sig=SECRET", format, client).send(n)
    assert len(seen) == 1 and seen[0].method == "POST"
    assert str(seen[0].url) == "https://hooks.example.com/x?sig=SECRET"
    assert seen[0].headers["content-type"] == "application/json"
    return json.loads(seen[0].content)


async def test_json_body_is_exactly_the_model_dump() -> None:
    body = await body_of("json", notice())
    assert body == notice().model_dump(mode="json")
    assert body["v"] == 1 and body["at"] == "2025-03-04T05:06:07Z"
    assert AlertNotice.model_validate(body) == notice()


async def test_teams_body_is_an_adaptive_card_in_a_message_envelope() -> None:
    body = await body_of("teams", notice())
    assert body["type"] == "message" and len(body["attachments"]) == 1
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"] == notice().title
    facts = {f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]}
    assert facts["Value"] == "12" and facts["Threshold"] == "10" and facts["Map"] == "customers"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open the console",
                                "url": "https://dw.example.com/api/console#/maps/customers"}]
    bare = (await body_of("teams", notice(console_url=None, actions=[])))["attachments"][0]["content"]
    assert "actions" not in bare


async def test_slack_body_has_fallback_text_and_blocks() -> None:
    body = await body_of("slack", notice(description="a <b> & c"))
    assert body["text"] == notice().title
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": notice().title}}
    everything = str(body["blocks"])
    assert "*Value*\\n12" in everything and "*Threshold*\\n10" in everything
    assert "a &lt;b&gt; &amp; c" in everything  # Slack's three escapes
    assert "<https://dw.example.com/api/console#/maps/customers|Open the console>" in everything


def test_an_unknown_format_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="json, teams or slack"):
        WebhookChannel("https://x", "xml", httpx.AsyncClient())  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "kind"), [(500, NotifyTransient), (503, NotifyTransient), (429, NotifyTransient),
                                              (400, NotifyRefused), (404, NotifyRefused), (401, NotifyRefused)])
async def test_webhook_status_sorts_transient_from_refused(status: int, kind: type[Exception]) -> None:
    client, _ = posting(status)
    async with client:
        with pytest.raises(kind) as failed:
            await WebhookChannel("https://hooks.example.com/x?sig=SECRET", "json", client).send(notice())
    assert f"HTTP {status}" in str(failed.value) and "SECRET" not in str(failed.value)
    assert str(failed.value).startswith(f"POST https://hooks.example.com: HTTP {status}")  # no path, no query


async def test_429_carries_retry_after() -> None:
    client, _ = posting(429, **{"Retry-After": "7"})
    async with client:
        with pytest.raises(NotifyTransient) as failed:
            await WebhookChannel("https://hooks.example.com/x", "slack", client).send(notice())
    assert failed.value.retry_after == 7.0


async def test_a_connection_error_is_transient_and_names_the_host_only() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused to https://hooks.example.com/x?sig=SECRET")

    async with httpx.AsyncClient(transport=httpx.MockTransport(broken)) as client:
        with pytest.raises(NotifyTransient) as failed:
            await WebhookChannel("https://hooks.example.com/x?sig=SECRET", "json", client).send(notice())
    assert str(failed.value) == "POST https://hooks.example.com: ConnectError"


def test_safe_url_keeps_scheme_host_and_port() -> None:
    assert safe_url("https://prod-12.westeurope.logic.azure.com:443/workflows/abc?sig=XYZ") == \
        "https://prod-12.westeurope.logic.azure.com:443"
    assert safe_url("https://user:pw@hooks.slack.com/services/T/B/C") == "https://hooks.slack.com"


# ---- e-mail message ----

def mail_channel(**changes: Any) -> EmailChannel:
    fields: dict[str, Any] = dict(host="smtp.example.com", port=587, tls="starttls", user="dw", password="PW",
                                  sender="Dual-write <dw@example.com>", recipients=["ops@example.com"])
    fields.update(changes)
    return EmailChannel(**fields)


def test_email_message_has_the_title_as_subject_and_the_text_as_body() -> None:
    msg = mail_channel().message(notice())
    assert msg["Subject"] == notice().title
    assert msg["From"] == "Dual-write <dw@example.com>" and msg["To"] == "ops@example.com"
    assert msg["Message-ID"].endswith("@example.com>") and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == notice().text()


def test_email_recipients_given_to_send_override_the_default_list() -> None:
    msg = mail_channel().message(notice(), ["a@example.com", "b@example.com"])
    assert msg["To"] == "a@example.com, b@example.com"


def test_the_password_stays_out_of_the_repr() -> None:
    assert "PW" not in repr(mail_channel())


async def test_no_recipients_at_all_is_refused() -> None:
    with pytest.raises(NotifyRefused, match="no recipients"):
        await mail_channel(recipients=[]).send(notice())


# ---- deliver ----

class FakeChannel:
    def __init__(self, name: str, *outcomes: Exception | None) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.calls: list[list[str] | None] = []

    async def send(self, notice: AlertNotice, *, recipients: list[str] | None = None) -> None:
        self.calls.append(recipients)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome is not None:
            raise outcome


async def test_transient_then_success_is_sent_after_two_tries() -> None:
    channel = FakeChannel("webhook", NotifyTransient("HTTP 503"), None)
    assert await deliver(notice(), [channel], backoff_seconds=0.001) == {"webhook": "sent"}
    assert len(channel.calls) == 2


async def test_a_refusal_is_tried_once(caplog: pytest.LogCaptureFixture) -> None:
    channel = FakeChannel("email", NotifyRefused("SMTP smtp.example.com:587: 535 bad credentials"))
    with caplog.at_level(logging.WARNING, "core.ops.notify"):
        result = await deliver(notice(), [channel], backoff_seconds=0.001)
    assert result == {"email": "failed: SMTP smtp.example.com:587: 535 bad credentials"}
    assert len(channel.calls) == 1
    assert "email channel failed after 1 attempt(s)" in caplog.text


async def test_transient_every_time_gives_up_after_the_attempts() -> None:
    channel = FakeChannel("webhook", NotifyTransient("HTTP 502"))
    result = await deliver(notice(), [channel], attempts=4, backoff_seconds=0.001)
    assert result == {"webhook": "failed: HTTP 502"} and len(channel.calls) == 4


async def test_a_channel_bug_is_reported_without_its_text_and_never_raised() -> None:
    channel = FakeChannel("webhook", RuntimeError("https://hooks.example.com/x?sig=SECRET"))
    result = await deliver(notice(), [channel], backoff_seconds=0.001)
    assert result == {"webhook": "failed: unexpected RuntimeError"}


async def test_every_channel_is_tried_and_recipients_reach_each() -> None:
    ok, bad = FakeChannel("email", None), FakeChannel("webhook", NotifyRefused("HTTP 404"))
    result = await deliver(notice(), [ok, bad], recipients=["x@example.com"], backoff_seconds=0.001)
    assert result == {"email": "sent", "webhook": "failed: HTTP 404"}
    assert ok.calls == [["x@example.com"]] and bad.calls == [["x@example.com"]]
    assert await deliver(notice(), []) == {}


# ---- settings ----

def test_no_alert_settings_build_no_channels() -> None:
    assert channels_from_settings(load_settings(VALID), httpx.AsyncClient()) == []


def test_alert_settings_build_the_webhook_and_email_channels() -> None:
    client = httpx.AsyncClient()
    settings = load_settings({**VALID, "ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/C",
                              "ALERT_WEBHOOK_FORMAT": "slack", "ALERT_SMTP_HOST": "smtp.example.com",
                              "ALERT_SMTP_PORT": "465", "ALERT_SMTP_TLS": "tls", "ALERT_SMTP_USER": "dw",
                              "ALERT_SMTP_PASSWORD": "PW", "ALERT_EMAIL_FROM": "dw@example.com",
                              "ALERT_EMAIL_TO": "ops@example.com, data@example.com,"})
    webhook, email = channels_from_settings(settings, client)
    assert isinstance(webhook, WebhookChannel) and isinstance(email, EmailChannel)
    assert (webhook.name, webhook.url, webhook.format, webhook.client) == \
        ("webhook", "https://hooks.slack.com/services/T/B/C", "slack", client)
    assert (email.name, email.host, email.port, email.tls, email.user, email.password, email.sender) == \
        ("email", "smtp.example.com", 465, "tls", "dw", "PW", "dw@example.com")
    assert email.recipients == ["ops@example.com", "data@example.com"]


def test_email_without_a_sender_falls_back_to_an_address_user_or_is_not_built() -> None:
    base = {**VALID, "ALERT_SMTP_HOST": "smtp.example.com"}
    (email,) = channels_from_settings(load_settings({**base, "ALERT_SMTP_USER": "dw@example.com"}),
                                      httpx.AsyncClient())
    assert isinstance(email, EmailChannel) and email.sender == "dw@example.com" and email.recipients == []
    assert email.password is None and email.tls == "starttls" and email.port == 587
    assert channels_from_settings(load_settings(base), httpx.AsyncClient()) == []
