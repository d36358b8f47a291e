"""Alert notifications: the documented notice (JSON body v1) and the channels that carry it (docs/notifications.md).

`deliver` sends one notice on every channel at once, retries transient failures with growing waits and
reports per channel "sent" or "failed: <reason>"; it never raises for a channel, so a dead mail server or
webhook never blocks the alert evaluation (nor sync). Logs name a webhook by scheme and host only (its URL
often carries a secret) and never show the SMTP password.
"""

from __future__ import annotations

import asyncio
import logging
import re

import httpx

from core.ops.notify.mail import EmailChannel
from core.ops.notify.notice import AlertNotice, Channel, NotifyError, NotifyRefused, NotifyTransient
from core.ops.notify.webhook import WebhookChannel, json_body, safe_url, slack_body, teams_body
from core.settings import Settings

__all__ = ["AlertNotice", "Channel", "EmailChannel", "NotifyError", "NotifyRefused", "NotifyTransient",
           "WebhookChannel", "channels_from_settings", "deliver", "json_body", "safe_url", "slack_body",
           "split_addresses", "teams_body"]

log = logging.getLogger("core.ops.notify")

MAX_RETRY_AFTER = 30.0  # seconds: a 429's Retry-After is honoured up to this, the alert timer runs every minute


async def deliver(notice: AlertNotice, channels: list[Channel], *, recipients: list[str] | None = None,
                  attempts: int = 3, backoff_seconds: float = 1.0) -> dict[str, str]:
    """Send on every channel at once; per channel name "sent" or "failed: <reason>". Never raises for a channel."""
    outcomes = await asyncio.gather(
        *(_deliver_one(notice, c, recipients, max(1, attempts), backoff_seconds) for c in channels))
    return {channel.name: outcome for channel, outcome in zip(channels, outcomes, strict=True)}


async def _deliver_one(notice: AlertNotice, channel: Channel, recipients: list[str] | None, attempts: int,
                       backoff: float) -> str:
    tries = 0
    while True:
        tries += 1
        try:
            await channel.send(notice, recipients=recipients)
            return "sent"
        except NotifyTransient as exc:
            reason = str(exc)
            if tries >= attempts:
                break
            wait = backoff * 2 ** (tries - 1)
            if exc.retry_after is not None:
                wait = max(wait, min(exc.retry_after, MAX_RETRY_AFTER))
            await asyncio.sleep(wait)
        except NotifyRefused as exc:
            reason = str(exc)
            break
        except Exception as exc:  # a channel's own bug: reported like any failure, its text may hold a secret
            reason = f"unexpected {type(exc).__name__}"
            break
    log.warning("alert %s %s: %s channel failed after %d attempt(s): %s",
                notice.kind, notice.rule, channel.name, tries, reason)
    return f"failed: {reason}"


def split_addresses(text: str | None) -> list[str]:
    return [a.strip() for a in re.split(r"[,;]", text or "") if a.strip()]


def channels_from_settings(settings: Settings, client: httpx.AsyncClient) -> list[Channel]:
    """The webhook and e-mail channels the ALERT_* settings configure; an unset one is not built."""
    channels: list[Channel] = []
    if settings.alert_webhook_url is not None:
        channels.append(WebhookChannel(str(settings.alert_webhook_url), settings.alert_webhook_format, client))
    if settings.alert_smtp_host:
        user = settings.alert_smtp_user
        sender = settings.alert_email_from or (user if user and "@" in user else None)
        if sender is None:
            log.warning("ALERT_SMTP_HOST is set but ALERT_EMAIL_FROM is not: no e-mail notifications")
        else:
            password = settings.alert_smtp_password
            channels.append(EmailChannel(
                host=settings.alert_smtp_host, port=settings.alert_smtp_port, tls=settings.alert_smtp_tls,
                user=user, password=password.get_secret_value() if password else None, sender=sender,
                recipients=split_addresses(settings.alert_email_to)))
    return channels
