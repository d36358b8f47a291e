"""Typed errors of the two OData clients: transient ones are worth retrying, permanent ones are not.

`.text` is the full response body (never truncated: the error log shows it); `.message` the most
specific human text the target gave (Dataverse `error.message`, F&O `innererror.message` first).
"""

from __future__ import annotations

import json
from typing import Any


class ConnectorError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str = "", text: str = "",
                 method: str = "", url: str = "") -> None:
        super().__init__(f"{method} {url}: {status} {code} {message}".strip() if method else message)
        self.status = status
        self.code = code
        self.message = message
        self.text = text
        self.method = method
        self.url = url


class TransientError(ConnectorError):
    """Worth retrying later: 5xx gateway/unavailable answers, timeouts, broken connections."""


class ThrottledError(TransientError):
    """429 service protection; wait `retry_after` seconds before trying again."""

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """Retrying the same request will fail the same way."""


class ValidationFailed(PermanentError):
    """The target refused the data (400/422 and other 4xx without their own class)."""


class ConflictError(PermanentError):
    """412: the row changed since its etag was read, or a create-only write met an existing row."""


class NotFound(PermanentError):
    """404: no such row (or no such entity set)."""


class AuthFailed(PermanentError):
    """401/403: the token or the application user's roles are wrong; fix settings, then resubmit."""


def error_details(text: str) -> tuple[str, str]:
    """(code, message) from an OData error body; the message prefers F&O's innererror text."""
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        return "", text.strip()[:500]
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "", text.strip()[:500]
    code = str(error.get("code") or "")
    inner = error.get("innererror")
    if isinstance(inner, dict) and inner.get("message"):
        return code, str(inner["message"])
    return code, str(error.get("message") or "")
