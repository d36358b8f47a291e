"""The alert notice (the documented JSON body, version 1), the channel port and its two error types."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, field_validator


class AlertNotice(BaseModel):
    """What the engine tells people when an alert rule fires or resolves; the webhook `json` body as is."""

    v: Literal[1] = 1
    kind: Literal["fired", "resolved"]
    rule: str
    description: str = ""
    subject: str  # the map's name, or "*" for a figure of the whole engine
    direction: str | None = None  # "to_dataverse", "to_fno" or None (both)
    metric: str
    condition: str  # human text: "errors > 10 in 15 min"
    value: float | None = None  # the figure that fired (or resolved) the rule; None: there was no figure
    threshold: float
    window_minutes: float
    at: AwareDatetime
    actions: list[str] = []  # what the engine did: "paused map customers"
    console_url: str | None = None

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def title(self) -> str:
        """One line: `[dual-write] FIRED errors-15min on customers: errors > 10 in 15 min (now 12)`."""
        where = "all maps" if self.subject == "*" else self.subject
        if self.direction:
            where += f" ({self.direction})"
        now = "" if self.value is None else f" (now {_num(self.value)})"
        return one_line(f"[dual-write] {self.kind.upper()} {self.rule} on {where}: {self.condition}{now}")

    def facts(self) -> list[tuple[str, str]]:
        """(label, text) pairs shown by every format."""
        return [
            ("Rule", self.rule),
            ("Map", "all maps" if self.subject == "*" else self.subject),
            ("Direction", self.direction or "both"),
            ("Condition", self.condition),
            ("Value", "n/a" if self.value is None else _num(self.value)),
            ("Threshold", _num(self.threshold)),
            ("Window", f"{_num(self.window_minutes)} min"),
            ("At", self.at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ]

    def text(self) -> str:
        """The plain-text body of the e-mail."""
        lines = [self.title, ""]
        if self.description:
            lines += [self.description, ""]
        lines += [f"{label + ':':<11}{value}" for label, value in self.facts()]
        if self.actions:
            lines += ["", "What the engine did:", *(f"- {a}" for a in self.actions)]
        if self.console_url:
            lines += ["", f"Console: {self.console_url}"]
        return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e15 else str(x)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class NotifyError(Exception):
    """A channel could not deliver; the message is short and carries no secret."""


class NotifyTransient(NotifyError):
    """Worth another try: connection errors, timeouts, 429, 5xx, SMTP 4xx."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotifyRefused(NotifyError):
    """Trying again will fail the same way: other 4xx, SMTP 5xx, bad login, TLS trust, no recipients."""


class Channel(Protocol):
    name: str

    async def send(self, notice: AlertNotice, *, recipients: list[str] | None = None) -> None: ...
