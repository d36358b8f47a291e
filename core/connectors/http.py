"""The one place that decides what an HTTP answer means and retries what is worth retrying.

`classify` maps a response to an Action; `ODataHttp.request` loops on it: `rate_limited` waits the
server's Retry-After (bounded per wait and per call), `retry` (and timeouts / broken connections)
backs off exponentially with jitter, everything else returns or raises the typed error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import httpx

from core.connectors import jsonwire
from core.connectors.auth import BearerAuth, TokenError, TokenSource
from core.connectors.batching import Batcher
from core.connectors.errors import (
    AuthFailed,
    ConflictError,
    ConnectorError,
    NotFound,
    PermanentError,
    ThrottledError,
    TransientError,
    ValidationFailed,
    error_details,
)
from core.ops import telemetry

log = logging.getLogger(__name__)

Action = Literal["ok", "retry", "rate_limited", "fail", "conflict", "not_found", "auth"]

# Dataverse 500s that usually clear up on their own: 0x80044150 "Generic SQL error" (SQL timeouts,
# deadlocks) and 0x80040216 "An unexpected error occurred". From field experience, not the reference
# [Unconfirmed]; other 500s (a plug-in's exception, 0x80040265) fail at once.
_DATAVERSE_TRANSIENT_CODES = frozenset({"0x80040216", "0x80044150"})
# A 429 with "Retry-After: 0" must not spin: every throttled try waits at least this long.
MIN_THROTTLE_WAIT = 0.1
# Failures that happen before a request reaches the target: safe to send again, even a POST.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUSES = frozenset({408, 502, 503, 504})
DEFAULT_RETRY_AFTER = 1.0


def classify(response: httpx.Response) -> Action:
    status = response.status_code
    if status < 400:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status in _RETRY_STATUSES:
        return "retry"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 412:
        return "conflict"
    if status == 500:
        code, _ = error_details(_body_text(response))
        return "retry" if code.lower() in _DATAVERSE_TRANSIENT_CODES else "fail"
    return "fail"


def retry_after(response: httpx.Response) -> float:
    """Seconds the server asked us to wait (Retry-After in seconds); 1 s when absent or unreadable."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _body_text(response: httpx.Response) -> str:
    try:
        return response.text
    except httpx.ResponseNotRead:
        return ""


def error_for(response: httpx.Response, action: Action | None = None) -> ConnectorError:
    """The typed error for a non-ok answer, carrying the full body."""
    action = action or classify(response)
    text = _body_text(response)
    code, message = error_details(text)
    fields: dict[str, Any] = {"status": response.status_code, "code": code, "text": text,
                              "method": response.request.method, "url": _safe_url(response.request.url)}
    message = message or response.reason_phrase
    match action:
        case "rate_limited":
            return ThrottledError(message, retry_after=retry_after(response), **fields)
        case "retry":
            return TransientError(message, **fields)
        case "auth":
            return AuthFailed(message, **fields)
        case "not_found":
            return NotFound(message, **fields)
        case "conflict":
            return ConflictError(message, **fields)
        case _:
            return ValidationFailed(message, **fields)


def _safe_url(url: httpx.URL) -> str:
    # Query strings can carry function keys (`code=`) on some targets; keep the path only in logs.
    return str(url.copy_with(query=None)) if url.query else str(url)


@dataclass(frozen=True)
class Patience:
    """How long one call keeps retrying before it gives up (raises the transient error)."""

    max_retries: int
    max_total_wait: float


_patience: ContextVar[Patience | None] = ContextVar("odata_patience", default=None)


@contextlib.contextmanager
def patience(max_retries: int, max_total_wait: float) -> Iterator[None]:
    """Calls made inside retry at most this much, whatever their client's own policy: a caller with a
    retry of its own (apply's scheduled retries) does not want a down target to hold it for a minute."""
    token = _patience.set(Patience(max_retries, max_total_wait))
    try:
        yield
    finally:
        _patience.reset(token)


@dataclass
class Stats:
    """Counters a caller (and a test) can read: how often the target pushed back."""

    requests: int = 0
    throttled: int = 0
    retried: int = 0
    waited_seconds: float = 0.0


class ODataHttp:
    """A shared keep-alive AsyncClient with bearer auth, typed errors and the retry policy."""

    def __init__(self, base_url: str, tokens: TokenSource, *, headers: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, max_retries: int = 4,
                 backoff_base: float = 0.2, max_wait: float = 30.0, max_total_wait: float = 60.0,
                 timeout: float = 30.0) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.max_wait = max_wait
        self.max_total_wait = max_total_wait
        self.stats = Stats()
        self.client = httpx.AsyncClient(
            base_url=self.base_url, auth=BearerAuth(tokens), headers=dict(headers or {}), transport=transport,
            timeout=httpx.Timeout(timeout), limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        self.batcher: Batcher | None = None

    def batch_concurrent(self, *, max_parts: int = 100, window: float = 0.003, each_write_atomic: bool = False,
                         continue_on_error: bool = True) -> None:
        """From now on, send the requests made at about the same time as one `$batch` (core.connectors.batching):
        what many records applied side by side cost the target in requests, and the engine in CPU."""
        self.batcher = Batcher(self.client, self.url("$batch"), max_parts=max_parts, window=window,
                               each_write_atomic=each_write_atomic, continue_on_error=continue_on_error)

    async def aclose(self) -> None:
        if self.batcher is not None:
            await self.batcher.aclose()
        await self.client.aclose()

    async def __aenter__(self) -> ODataHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to the service root (absolute URLs pass unchanged)."""
        return path if path.startswith(("http://", "https://")) else self.base_url + path.lstrip("/")

    async def request(self, method: str, url: str, *, body: Any = None, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, content: bytes | None = None,
                      multipart_ok: bool = False, alone: bool = False) -> httpx.Response:
        """Send, retrying throttling and transient failures; raise the typed error otherwise.

        `body` is JSON (written by jsonwire); `content` raw bytes (a $batch body) with its own Content-Type.
        `multipart_ok`: a `$batch` that stopped at a failing part answers 400 with the parts so far as
        multipart; return that for parsing instead of raising. `alone`: never gathered into a `$batch` (a
        bulk message that is a batch of its own).
        """
        send_headers = dict(headers or {})
        if body is not None:
            content = jsonwire.dumps(body)
            send_headers.setdefault("Content-Type", "application/json")
        target = httpx.URL(self.url(url))
        if params:
            # httpx replaces a URL's own query with `params`; merge, so `?cross-company=true` survives.
            target = target.copy_merge_params(dict(params))
        attempt = 0
        waited = 0.0
        limits = _patience.get() or Patience(self.max_retries, self.max_total_wait)
        batcher = None if multipart_ok or alone or target.path.endswith("/$batch") else self.batcher
        while True:
            self.stats.requests += 1
            try:
                # One client span per attempt (core.ops.telemetry): method, path without key values, status.
                with telemetry.http_span(method, target.path, resend=attempt, batched=batcher is not None,
                                         host=target.host, port=target.port) as span:
                    if batcher is not None:
                        response = await batcher.request(method, target, content=content, headers=send_headers)
                    else:
                        response = await self.client.request(method, target, content=content, headers=send_headers)
                    telemetry.http_status(span, response.status_code)
            except TokenError as exc:
                raise AuthFailed(f"no token: {exc}", method=method, url=_safe_url(target)) from exc
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                # The request itself is malformed (an illegal header value, a bad URL): sending again won't help.
                raise PermanentError(f"{type(exc).__name__}: {exc}", method=method, url=_safe_url(target)) from exc
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                error: ConnectorError = TransientError(f"{type(exc).__name__}: {exc}", method=method,
                                                       url=_safe_url(target))
                if method.upper() == "POST" and not isinstance(exc, _UNSENT):
                    # The target may have written it (a create, a $batch): sending again could write it
                    # twice. The caller decides (apply re-reads by key and upserts).
                    raise error from exc
                delay = self._backoff(attempt)
            else:
                action = classify(response)
                if action == "ok" or (multipart_ok and action in ("fail", "conflict", "not_found")
                                      and response.headers.get("Content-Type", "").startswith("multipart/")):
                    return response
                error = error_for(response, action)
                if action == "rate_limited":
                    assert isinstance(error, ThrottledError)
                    self.stats.throttled += 1
                    delay = min(max(error.retry_after, MIN_THROTTLE_WAIT), self.max_wait)
                    if waited + delay > limits.max_total_wait:
                        raise error
                    log.info("%s %s throttled (%s); waiting %.1f s", method, error.url, error.code, delay)
                    await asyncio.sleep(delay)
                    waited += delay
                    self.stats.waited_seconds += delay
                    continue  # throttling is the server pacing us, not a failed attempt
                if action != "retry":
                    raise error
                delay = self._backoff(attempt)
            if attempt >= limits.max_retries or waited + delay > limits.max_total_wait:
                raise error
            attempt += 1
            self.stats.retried += 1
            log.info("%s %s failed transiently (%s %s); retry %d/%d in %.2f s", method, error.url, error.status,
                     error.message[:200], attempt, limits.max_retries, delay)
            await asyncio.sleep(delay)
            waited += delay
            self.stats.waited_seconds += delay

    def _backoff(self, attempt: int) -> float:
        return min(self.max_wait, self.backoff_base * (2 ** attempt)) * (0.5 + random.random() / 2)


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def odata_literal(name: str, value: Any, *, dates: Literal["date", "datetimeoffset"]) -> str:
    """One key (or `$filter`) value as its OData literal, not yet URL-encoded: the one place both connectors
    render key parts. A string is quoted (`'` doubled); a number, boolean or guid is bare; a datetime is an
    Edm.DateTimeOffset in UTC, bare (`2026-01-01T09:30:00Z`). A date is bare too, in the type the service gives
    date columns: Dataverse's date-only columns are Edm.Date (`2026-01-01`), F&O types its dates as
    Edm.DateTimeOffset and writes them at 12:00 UTC (`2026-01-01T12:00:00Z`), so that is how it is addressed.
    A value of another type (or a naive datetime) is a ValueError naming the key part."""
    if value is None:
        raise ValueError(f"key part {name!r}: a key value cannot be null")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"key part {name!r}: {value} is not a finite number")
        return format(value, "f")
    if isinstance(value, str):
        return odata_string(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"key part {name!r}: datetime {value.isoformat()} has no time zone")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat() if dates == "date" else f"{value.isoformat()}T12:00:00Z"
    raise ValueError(f"key part {name!r}: unsupported key value type {type(value).__name__}")
