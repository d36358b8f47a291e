"""The broker's dead-letter queue of one queue: look at what is there, take one message out.

The dead-letter sub-queue of a session-enabled queue is not session-enabled (Service Bus and the
project's emulator agree), so a plain receiver reads it. `take` has no "receive by message id" to
use: it peeks first (no locks) to see whether the message is there at all, then receives, holding the
messages it passes over until it finds the one it wants, and abandons those back at the end (held,
not abandoned one by one, so the same message is not received again in the same walk).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from core.store.bus import service_bus_client

_PAGE = 100
_WAIT_S = 1.0
_FIRST_SEQUENCE = 1


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    session_id: str | None
    body: str
    reason: str | None
    description: str | None
    delivery_count: int
    enqueued_at: datetime | None
    sequence_number: int
    properties: dict[str, str]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _dead_letter(message: ServiceBusReceivedMessage) -> DeadLetter:
    props = {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}
    enqueued = message.enqueued_time_utc
    return DeadLetter(
        message_id=str(message.message_id),
        session_id=message.session_id,
        body=b"".join(message.body).decode("utf-8", "replace") if not isinstance(message.body, str | bytes)
        else _text(message.body),
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        delivery_count=message.delivery_count or 0,
        enqueued_at=None if enqueued is None else enqueued.astimezone(UTC),
        sequence_number=message.sequence_number or 0,
        properties=props,
    )


class DeadLetters:
    """Dead-letters of `queue`. One client and one receiver per process, reused (opening a link is
    the slow part), one operation at a time."""

    def __init__(self, connection_string: str, queue: str) -> None:
        self.queue = queue
        self._client = service_bus_client(connection_string)
        self._receiver: ServiceBusReceiver | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _receiving(self) -> AsyncIterator[ServiceBusReceiver]:
        async with self._lock:
            if self._receiver is None:
                receiver = self._client.get_queue_receiver(
                    self.queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=_WAIT_S)
                await receiver.__aenter__()
                self._receiver = receiver
            try:
                yield self._receiver
            except ServiceBusError:
                # A broken link is reopened next time rather than reused.
                receiver, self._receiver = self._receiver, None
                with contextlib.suppress(ServiceBusError):
                    await receiver.close()
                raise

    async def _peek(self, receiver: ServiceBusReceiver, limit: int) -> AsyncIterator[ServiceBusReceivedMessage]:
        # Always from an explicit sequence number: a reused receiver would otherwise go on where it stopped.
        next_seq, seen = _FIRST_SEQUENCE, 0
        while seen < limit:
            wanted = min(_PAGE, limit - seen)
            page = await receiver.peek_messages(max_message_count=wanted, sequence_number=next_seq)
            for message in page:
                yield message
            seen += len(page)
            if len(page) < wanted:
                return
            next_seq = (page[-1].sequence_number or 0) + 1

    async def peek(self, limit: int = 100) -> list[DeadLetter]:
        """Up to `limit` dead-letters, oldest first, without locking them."""
        async with self._receiving() as receiver:
            return [_dead_letter(m) async for m in self._peek(receiver, limit)]

    async def find(self, message_id: str, limit: int = 5000) -> DeadLetter | None:
        """The dead-letter with this message id, looked for without locking (first `limit` only)."""
        async with self._receiving() as receiver:
            async for message in self._peek(receiver, limit):
                if str(message.message_id) == message_id:
                    return _dead_letter(message)
        return None

    async def take(self, message_id: str) -> DeadLetter | None:
        """Remove the dead-letter with this message id; None when there is none."""
        if await self.find(message_id) is None:
            return None
        held: list[ServiceBusReceivedMessage] = []
        seen: set[int] = set()
        taken: DeadLetter | None = None
        async with self._receiving() as receiver:
            try:
                while taken is None:
                    batch = await receiver.receive_messages(max_message_count=_PAGE, max_wait_time=_WAIT_S)
                    fresh = [m for m in batch if m.sequence_number not in seen]
                    if not fresh:
                        break  # walked them all (or only our own lapsed locks came back)
                    for message in fresh:
                        seen.add(message.sequence_number or 0)
                        if taken is None and str(message.message_id) == message_id:
                            await receiver.complete_message(message)
                            taken = _dead_letter(message)
                        else:
                            held.append(message)
            finally:
                for message in held:
                    # A lapsed lock means the broker already gave the message back.
                    with contextlib.suppress(ServiceBusError):
                        await receiver.abandon_message(message)
        return taken

    async def close(self) -> None:
        if self._receiver is not None:
            await self._receiver.close()
            self._receiver = None
        await self._client.close()
