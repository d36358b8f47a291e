"""The webhook channel: one POST of the notice as json (documented), a Teams Adaptive Card or a Slack message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from core.ops.notify.notice import AlertNotice, NotifyRefused, NotifyTransient, one_line


def safe_url(url: str) -> str:
    """Scheme and host (and port) only: what a log may say about a webhook URL."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def json_body(notice: AlertNotice) -> dict[str, Any]:
    return notice.model_dump(mode="json")


def teams_body(notice: AlertNotice) -> dict[str, Any]:
    """An Adaptive Card (1.4) in the message envelope that Teams Workflows webhooks take."""
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": notice.title, "weight": "Bolder", "size": "Medium",
                                   "wrap": True, "color": "Attention" if notice.kind == "fired" else "Good"}]
    if notice.description:
        body.append({"type": "TextBlock", "text": notice.description, "wrap": True})
    body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in notice.facts()]})
    if notice.actions:
        body.append({"type": "TextBlock", "text": "What the engine did:", "weight": "Bolder", "wrap": True})
        body += [{"type": "TextBlock", "text": f"- {a}", "wrap": True, "spacing": "None"} for a in notice.actions]
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                            "version": "1.4", "msteams": {"width": "Full"}, "body": body}
    if notice.console_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the console", "url": notice.console_url}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notice: AlertNotice) -> dict[str, Any]:
    """Slack incoming-webhook message: `text` (the notification fallback) and Block Kit blocks."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": notice.title[:150]}}]
    if notice.description:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(notice.description)[:3000]}})
    blocks.append({"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v)}"[:2000]} for k, v in notice.facts()]})
    if notice.actions:
        done = "\n".join(f"• {_mrkdwn(a)}" for a in notice.actions)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*What the engine did*\n{done}"[:3000]}})
    if notice.console_url:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{notice.console_url}|Open the console>"}]})
    return {"text": notice.title, "blocks": blocks}


BODIES = {"json": json_body, "teams": teams_body, "slack": slack_body}


@dataclass
class WebhookChannel:
    url: str = field(repr=False)
    format: Literal["json", "teams", "slack"]
    client: httpx.AsyncClient = field(repr=False)
    name: str = "webhook"

    def __post_init__(self) -> None:
        if self.format not in BODIES:
            raise ValueError(f"webhook format must be json, teams or slack, not {self.format!r}")

    async def send(self, notice: AlertNotice, *, recipients: list[str] | None = None) -> None:
        where = safe_url(self.url)
        try:
            response = await self.client.post(self.url, json=BODIES[self.format](notice))
        except httpx.TransportError as exc:  # connect, read, write, pool timeouts, broken connections
            raise NotifyTransient(f"POST {where}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        said = one_line(response.text)[:120]
        reason = f"POST {where}: HTTP {status}" + (f" {said}" if said else "")
        if status in (408, 429) or status >= 500:
            raise NotifyTransient(reason, retry_after=_retry_after(response.headers.get("Retry-After")))
        raise NotifyRefused(reason)


def _retry_after(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None  # an HTTP date: the growing waits will do
