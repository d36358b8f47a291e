"""Alert notification channels against real servers: an aiosmtpd SMTP server (plain, STARTTLS with a login,
implicit TLS; certificates made by tests.fixtures.fno.local_tls) and a recording HTTP endpoint
(tests.fixtures.http_receiver). deliver() reports every failure and returns normally."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from core.ops.notify import AlertNotice, EmailChannel, WebhookChannel, deliver
from devstack.processes import free_port
from tests.fixtures.fno import TlsFiles, local_tls
from tests.fixtures.http_receiver import HttpReceiver, serve
from tests.fixtures.smtp import Mailbox

pytestmark = pytest.mark.integration

NOTICE = AlertNotice(
    kind="fired", rule="errors-15min", description="Too many failed changes", subject="customers",
    direction="to_fno", metric="errors", condition="errors > 10 in 15 min", value=12, threshold=10,
    window_minutes=15, at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC), actions=["paused map customers"],
    console_url="http://127.0.0.1:7071/api/console")
FAST = 0.01  # backoff seconds


def login_as(user: str, password: str) -> Any:
    def authenticator(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user.encode(), password.encode())
        return AuthResult(success=ok, handled=False)
    return authenticator


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return local_tls(Path(tmp_path_factory.mktemp("smtp-tls")))


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_path, tls.key_path)
    return context


def trusting(tls: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.cert_path))


@pytest.fixture
def smtp() -> Iterator[Any]:
    """Start an SMTP server with the given aiosmtpd options: (controller, mailbox)."""
    started: list[Controller] = []

    def start(**options: Any) -> tuple[Controller, Mailbox]:
        mailbox = Mailbox()
        controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
        controller.start()
        started.append(controller)
        return controller, mailbox

    yield start
    for controller in started:
        controller.stop()


def mail(port: int, tls: str, **changes: Any) -> EmailChannel:
    fields: dict[str, Any] = dict(host="127.0.0.1", port=port, tls=tls, user=None, password=None,
                                  sender="dual-write@example.com", recipients=["ops@example.com"], timeout=10)
    fields.update(changes)
    return EmailChannel(**fields)


def assert_the_notice(envelope: Envelope, message: EmailMessage, to: list[str]) -> None:
    assert envelope.mail_from == "dual-write@example.com" and envelope.rcpt_tos == to
    assert message["Subject"] == NOTICE.title
    assert message["From"] == "dual-write@example.com" and message["To"] == ", ".join(to)
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == NOTICE.text()


async def test_plain_smtp_delivers_the_mail(smtp: Any) -> None:
    controller, mailbox = smtp()
    result = await deliver(NOTICE, [mail(controller.port, "none")], backoff_seconds=FAST)
    assert result == {"email": "sent"}
    assert_the_notice(*mailbox.only(), ["ops@example.com"])


async def test_starttls_with_login_delivers_to_the_rule_recipients(smtp: Any, tls: TlsFiles) -> None:
    controller, mailbox = smtp(tls_context=server_context(tls), require_starttls=True,
                               authenticator=login_as("dw", "s3cret"), auth_required=True)
    channel = mail(controller.port, "starttls", user="dw", password="s3cret", ssl_context=trusting(tls))
    to = ["data@example.com", "lead@example.com"]
    assert await deliver(NOTICE, [channel], recipients=to, backoff_seconds=FAST) == {"email": "sent"}
    assert_the_notice(*mailbox.only(), to)


async def test_implicit_tls_delivers_the_mail(smtp: Any, tls: TlsFiles) -> None:
    controller, mailbox = smtp(ssl_context=server_context(tls))
    channel = mail(controller.port, "tls", ssl_context=trusting(tls))
    assert await deliver(NOTICE, [channel], backoff_seconds=FAST) == {"email": "sent"}
    assert_the_notice(*mailbox.only(), ["ops@example.com"])


async def test_a_wrong_password_fails_once_without_showing_it(smtp: Any, tls: TlsFiles,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    controller, mailbox = smtp(tls_context=server_context(tls), authenticator=login_as("dw", "s3cret"))
    channel = mail(controller.port, "starttls", user="dw", password="WRONG-PASSWORD", ssl_context=trusting(tls))
    result = await deliver(NOTICE, [channel], backoff_seconds=FAST)
    assert result["email"].startswith(f"failed: SMTP 127.0.0.1:{controller.port}: 535")
    assert mailbox.envelopes == []
    assert "WRONG-PASSWORD" not in caplog.text and "after 1 attempt(s)" in caplog.text


async def test_an_untrusted_certificate_is_refused(smtp: Any, tls: TlsFiles) -> None:
    controller, mailbox = smtp(tls_context=server_context(tls))
    result = await deliver(NOTICE, [mail(controller.port, "starttls")], backoff_seconds=FAST)  # default trust store
    assert result["email"].startswith(f"failed: SMTP 127.0.0.1:{controller.port}: TLS")
    assert mailbox.envelopes == []


async def test_a_dead_smtp_port_is_reported_and_deliver_returns() -> None:
    port = free_port()  # nothing listens there
    result = await deliver(NOTICE, [mail(port, "none")], attempts=2, backoff_seconds=FAST)
    assert result["email"].startswith(f"failed: SMTP 127.0.0.1:{port}: ConnectionRefusedError")


async def test_the_json_webhook_body_validates_back_into_the_notice() -> None:
    with serve(HttpReceiver()) as receiver:
        async with httpx.AsyncClient(timeout=10) as client:
            channel = WebhookChannel(receiver.url("/hook?sig=SECRET"), "json", client)
            assert await deliver(NOTICE, [channel], backoff_seconds=FAST) == {"webhook": "sent"}
        (request,) = receiver.at("/hook")
    assert request.query == {"sig": ["SECRET"]}
    assert request.headers["content-type"] == "application/json"
    assert AlertNotice.model_validate(request.body) == NOTICE


async def test_503_twice_then_200_is_sent_after_three_posts() -> None:
    with serve(HttpReceiver()) as receiver:
        receiver.answer("/hook", (503, 0.0), (503, 0.0), (200, 0.0))
        async with httpx.AsyncClient(timeout=10) as client:
            channel = WebhookChannel(receiver.url("/hook"), "teams", client)
            assert await deliver(NOTICE, [channel], backoff_seconds=FAST) == {"webhook": "sent"}
        posts = receiver.at("/hook")
    assert len(posts) == 3 and all(p.body == posts[0].body for p in posts)
    assert posts[0].body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"


async def test_a_failing_channel_does_not_stop_the_other(smtp: Any) -> None:
    controller, mailbox = smtp()
    with serve(HttpReceiver(default=(404, 0.0))) as receiver:
        async with httpx.AsyncClient(timeout=10) as client:
            channels = [WebhookChannel(receiver.url("/gone"), "slack", client), mail(controller.port, "none")]
            result = await deliver(NOTICE, channels, backoff_seconds=FAST)
        assert len(receiver.at("/gone")) == 1
    assert result == {"webhook": f"failed: POST http://127.0.0.1:{receiver.port}: HTTP 404", "email": "sent"}
    assert len(mailbox.envelopes) == 1
