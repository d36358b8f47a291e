"""One delivery of a queued change: apply it, and decide what a failure becomes.

Python functions cannot settle Service Bus messages themselves (the SDK-type binding gives a
ServiceBusReceivedMessage without settlement actions), so the engine owns its retry policy:
- applied or skipped: recorded in the activity log, the message completes;
- a transient failure (throttling, 5xx, timeouts, a lookup whose parent is not there yet)
  before the last attempt: raises `RetryLater`, the host abandons the message and the broker
  redelivers it; the next delivery first waits an exponential backoff (in order: the session
  keeps the record's later changes behind it);
- a permanent failure (the target refused the data, a conflict the policy settled, a change that
  cannot be read), or a transient one on its last attempt: recorded in the error log with its
  category, full text, attempts and the change itself, then the message completes. The error log
  is where such changes are resubmitted or discarded; the broker's dead-letter queue only holds
  what the engine never saw (expiry, crashes) and the error log shows those too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import ValidationError

from core.connectors.errors import ConnectorError
from core.events.model import ChangeEvent
from core.store.activity import ActivityEntry
from core.store.errors import ErrorEntry
from core.sync.apply import Applier, record_label
from core.sync.errors import BadChange, category_of, error_text, is_transient

log = logging.getLogger(__name__)
Handled = Literal["applied", "skipped", "failed"]


class RetryLater(Exception):
    """Raised to have the message redelivered (the function fails, the host abandons it)."""


class ActivityRecorder(Protocol):
    async def record(self, entries: list[ActivityEntry]) -> None: ...


class ErrorRecorder(Protocol):
    async def record(self, entry: ErrorEntry) -> ErrorEntry: ...


@dataclass(frozen=True)
class Delivery:
    body: bytes
    message_id: str
    session_id: str
    delivery_count: int


def backoff_seconds(delivery_count: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Wait before delivery n (n >= 2): base, 2*base, 4*base, ... capped."""
    return 0.0 if delivery_count <= 1 else min(cap, base * 2 ** (delivery_count - 2))


class Worker:
    def __init__(self, applier: Applier, activity: ActivityRecorder, errors: ErrorRecorder, *,
                 max_attempts: int = 5, backoff_base: float = 0.5,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.applier = applier
        self.activity = activity
        self.errors = errors
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.sleep = sleep

    async def handle(self, delivery: Delivery) -> Handled:
        try:
            event = ChangeEvent.from_json(delivery.body)
        except ValidationError as error:
            await self._fail(delivery, None, BadChange(f"not a change event: {error}"))
            return "failed"
        wait = backoff_seconds(delivery.delivery_count, self.backoff_base)
        if wait:
            await self.sleep(wait)
        try:
            result = await self.applier.apply(event, last_attempt=delivery.delivery_count >= self.max_attempts)
        except Exception as error:
            if is_transient(error) and delivery.delivery_count < self.max_attempts:
                log.info("change %s: attempt %d failed (%s), retrying", delivery.message_id,
                         delivery.delivery_count, type(error).__name__)
                await self._activity(event, delivery, "retrying", f"{category_of(error)}: {_short(error)}",
                                     record_label(event, self.applier.maps))
                raise RetryLater(str(error)) from error
            await self._fail(delivery, event, error)
            return "failed"
        latency = (datetime.now(UTC) - event.occurred_at).total_seconds() * 1000
        await self._activity(event, delivery, result.outcome, result.reason, result.key,
                             target_id=result.target_id, latency_ms=latency if result.outcome == "applied" else None)
        return result.outcome

    async def _activity(self, event: ChangeEvent, delivery: Delivery, outcome: str, reason: str, key: str, *,
                        target_id: str | None = None, latency_ms: float | None = None,
                        detail: str | None = None) -> None:
        await self.activity.record([ActivityEntry(
            map=event.map or "unmapped", key=key, source=event.source, operation=event.operation,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason, event_id=event.event_id, message_id=delivery.message_id, target_id=target_id,
            detail=detail, latency_ms=latency_ms)])

    async def _fail(self, delivery: Delivery, event: ChangeEvent | None, error: BaseException) -> None:
        now = datetime.now(UTC)
        category = category_of(error)
        text = error_text(error)
        key = record_label(event, self.applier.maps) if event is not None else ""
        status = error.status if isinstance(error, ConnectorError) else None
        code = error.code if isinstance(error, ConnectorError) else None
        await self.errors.record(ErrorEntry(
            id=delivery.message_id, map=(event.map if event else None) or "unknown", key=key,
            source=event.source if event else "", operation=event.operation if event else "",
            category=category, text=text, attempts=delivery.delivery_count,
            change=delivery.body.decode("utf-8", errors="replace"), session_id=delivery.session_id,
            first_at=now, last_at=now, target_status=status, target_code=code or None))
        if event is not None:
            await self._activity(event, delivery, "failed", f"{category}: {_short(error)}", key, detail=text[:2000])
        log.warning("change %s failed (%s) after %d attempt(s); in the error log", delivery.message_id, category,
                    delivery.delivery_count)


def _short(error: BaseException) -> str:
    text = error.message if isinstance(error, ConnectorError) and error.message else str(error)
    return text if len(text) <= 300 else text[:297] + "..."
