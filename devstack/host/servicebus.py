"""Service Bus queue triggers, pumped with the real async SDK the way the Functions extension does.

Peek-lock; complete on success and abandon on exception when host.json autoCompleteMessages is
true (with it false the host settles nothing, as in Azure); cardinality one (up to
maxConcurrentCalls invocations at once) or many (batches of up to maxMessageBatchSize);
session-enabled queues (up to maxConcurrentSessions sessions at once, or one at a time for a batched
trigger as in Azure; messages of one session in order, a session given up after sessionIdleTimeout
without messages); locks renewed for up to
maxAutoLockRenewalDuration. On stop, nothing new is received, invocations in flight finish and
are settled, and closing the receivers releases anything unprocessed.

Only a connection string is needed: the emulator and a real namespace look the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from azure.functions.servicebus import ServiceBusMessage as FunctionMessage
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from devstack.host.config import ServiceBusOptions
from devstack.host.indexing import FunctionSpec, ServiceBusTrigger
from devstack.host.invocation import InvocationFailed, Invoker
from devstack.host.outputs import bus_client

log = logging.getLogger("devstack.host")
_RECONNECT_DELAY_S = 2.0
_RECEIVE_WAIT_S = 1.0
# How long a worker asks the broker for the next free session before asking again: the Azure host's
# session processor waits its client's TryTimeout (60 s) too. Short asks made every idle worker open a
# new connection (about half a second and 30 ms of CPU each in the SDK) several times a second.
_SESSION_ACCEPT_WAIT_S = 60.0
# Sessions a batched session trigger accepts ahead of the one it works (see _batched_session_loop).
_SESSIONS_AHEAD = 3


# The Python SDK reads its socket in waits of 0.2 s (its default socket_timeout) and, once the first
# messages of a batch are in, waits 0.2 s more for the batch to fill ("further pull"): a batch of one
# message, or a session granted, then takes a fifth of a second. The broker has sent all it had by
# then; the Functions host (the .NET SDK) hands over what has arrived without that wait. socket_timeout
# is public; the further pull is a private knob, left alone if it moves.
_SOCKET_TIMEOUT_S = 0.02
_FURTHER_PULL_S = 0.02


def _return_batches_promptly(receiver: ServiceBusReceiver) -> None:
    if hasattr(receiver, "_further_pull_receive_timeout"):
        receiver._further_pull_receive_timeout = _FURTHER_PULL_S


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _body(message: ServiceBusReceivedMessage) -> bytes:
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(bytes(section) for section in message.body)
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


def to_function_message(message: ServiceBusReceivedMessage) -> FunctionMessage:
    """The azure.functions message the worker would hand the function."""
    properties = {str(_text(k)): _text(v) for k, v in (message.application_properties or {}).items()}
    enqueued = message.enqueued_time_utc
    metadata = {
        "MessageId": message.message_id,
        "DeliveryCount": message.delivery_count,
        "SessionId": message.session_id,
        "SequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": enqueued.isoformat() if enqueued else None,
        "UserProperties": properties,
        "ApplicationProperties": properties,
    }
    return FunctionMessage(
        body=_body(message),
        trigger_metadata=metadata,
        application_properties=properties,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=message.delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=enqueued,
        expires_at_utc=message.expires_at_utc,
        label=message.subject,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token) if message.lock_token else None,
        message_id=message.message_id,
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        state=int(message.state) if message.state is not None else None,
        subject=message.subject,
        time_to_live=message.time_to_live,
        to=message.to,
        user_properties=properties,
    )


def manual_message(text: str) -> FunctionMessage:
    """A message for the admin 'run this function' call, which does not go through a queue."""
    return FunctionMessage(
        body=text.encode(),
        application_properties={},
        message_id=str(uuid.uuid4()),
        delivery_count=1,
        enqueued_time_utc=datetime.now(UTC),
        user_properties={},
    )


class QueuePump:
    """Feeds one Service Bus-triggered function from its queue until stopped."""

    def __init__(self, spec: FunctionSpec, options: ServiceBusOptions, invoker: Invoker) -> None:
        assert isinstance(spec.trigger, ServiceBusTrigger)
        self.spec = spec
        self.trigger: ServiceBusTrigger = spec.trigger
        self.options = options
        self.invoker = invoker
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: ServiceBusClient | None = None
        self._renewer: AutoLockRenewer | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = bus_client(self.trigger.connection)
        renewal = self.options.max_auto_lock_renewal_duration.total_seconds()
        self._renewer = AutoLockRenewer(max_lock_renewal_duration=renewal) if renewal > 0 else None
        workers = self.options.max_concurrent_sessions if self.trigger.sessions else 1
        if self.trigger.sessions and self.trigger.many:
            # Azure's batched session trigger takes one session at a time per instance, whatever
            # maxConcurrentSessions says, and waits sessionIdleTimeout before the next one
            # (azure-functions-dotnet-worker#3087, azure-sdk-for-net#47981): so does this host, so that
            # local figures never promise what Azure will not do.
            workers = 1
        loop = self._session_loop if self.trigger.sessions else self._queue_loop
        if self.trigger.sessions and self.trigger.many:
            loop = self._batched_session_loop
        self._tasks = [
            asyncio.create_task(self._guarded(loop), name=f"pump:{self.spec.name}:{i}") for i in range(workers)
        ]

    async def stop(self, grace_s: float = 30.0) -> None:
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Every invocation has finished: stop renewing before the receivers still closing are gone, or a renewal
        # racing a close makes the SDK log a traceback ("Handler shutting down") on a graceful stop.
        if self._renewer is not None:
            await self._renewer.close()
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    async def _guarded(self, loop: Any) -> None:
        """Keep a worker alive across connection failures, as the extension's listener does."""
        while not self._stopping.is_set():
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("function %s: Service Bus receive failed (%s: %s); retrying", self.spec.name,
                            type(exc).__name__, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _RECONNECT_DELAY_S)

    async def _queue_loop(self) -> None:
        assert self._client is not None
        receiver = self._client.get_queue_receiver(
            self.trigger.queue_name, receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            prefetch_count=self.options.prefetch_count,
        )
        async with receiver:
            if self.trigger.many:
                while not self._stopping.is_set():
                    await self._receive_batch(receiver, self.options.max_message_batch_size)
                return
            capacity = self.options.max_concurrent_calls
            try:
                while not self._stopping.is_set():
                    if len(self._in_flight) >= capacity:
                        await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    messages = await receiver.receive_messages(
                        max_message_count=capacity - len(self._in_flight), max_wait_time=_RECEIVE_WAIT_S
                    )
                    for message in messages:
                        task = asyncio.create_task(self._invoke(receiver, [message], session=False))
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
            finally:
                # Let invocations in flight finish and settle before the receiver closes.
                if self._in_flight:
                    await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _session_loop(self) -> None:
        assert self._client is not None
        while not self._stopping.is_set():
            receiver = self._client.get_queue_receiver(
                self.trigger.queue_name, session_id=NEXT_AVAILABLE_SESSION,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                max_wait_time=max(self.options.session_idle_timeout.total_seconds(), _SESSION_ACCEPT_WAIT_S),
                prefetch_count=self.options.prefetch_count,
            )
            try:
                if not await self._open_unless_stopping(receiver):
                    return
                if self._renewer is not None and receiver.session is not None:
                    self._renewer.register(receiver, receiver.session)
                await self._drain_session(receiver)
            except OperationTimeoutError:
                continue  # no session free right now: ask again
            finally:
                # Closing a session receiver takes the SDK about half a second (a connection per receiver,
                # frames polled every 50 ms): release it in the background so the worker takes the next
                # session at once. Its messages are all settled by now.
                closing = asyncio.create_task(receiver.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    async def _batched_session_loop(self) -> None:
        """One session at a time, as Azure's batched session trigger, with the next sessions accepted while
        the current one is worked: the SDK opens a connection per session receiver, in about half a second of
        polling (one frame per 50 ms), where Azure's host attaches a link on a connection it already has.
        Invocations still never overlap, and each session is let go after sessionIdleTimeout as before.

        Sessions are worked in the order they were granted, not the order they were asked for: an ask still
        waiting for a free session (up to a minute) must not keep a session granted to a later ask locked
        and unworked meanwhile (its changes would wait that minute, and its lock could run out)."""
        asking: set[asyncio.Task[ServiceBusReceiver | None]] = set()
        granted: deque[ServiceBusReceiver] = deque()
        try:
            while not self._stopping.is_set():
                while len(asking) + len(granted) < _SESSIONS_AHEAD:
                    asking.add(asyncio.create_task(self._accept()))
                if not granted:
                    done, asking = await asyncio.wait(asking, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        receiver = task.result()  # an error other than "no session in time" ends the loop
                        if receiver is not None:
                            granted.append(receiver)
                    continue
                receiver = granted.popleft()
                try:
                    await self._drain_session(receiver)
                finally:
                    self._close_later(receiver)
                # sessions granted while that one was worked go next, in the order they came
                for task in [t for t in asking if t.done()]:
                    asking.discard(task)
                    left = task.result()
                    if left is not None:
                        granted.append(left)
        finally:
            for receiver in granted:
                self._close_later(receiver)
            for task in asking:
                task.cancel()
            for task in asking:
                with contextlib.suppress(BaseException):
                    left = await task
                    if left is not None:
                        self._close_later(left)

    async def _accept(self) -> ServiceBusReceiver | None:
        """A receiver holding the next free session, or None (none free in time, or the host stops)."""
        assert self._client is not None
        receiver = self._client.get_queue_receiver(
            self.trigger.queue_name, session_id=NEXT_AVAILABLE_SESSION, receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            max_wait_time=max(self.options.session_idle_timeout.total_seconds(), _SESSION_ACCEPT_WAIT_S),
            prefetch_count=self.options.prefetch_count, socket_timeout=_SOCKET_TIMEOUT_S,
        )
        try:
            if not await self._open_unless_stopping(receiver):
                self._close_later(receiver)
                return None
        except OperationTimeoutError:
            self._close_later(receiver)
            return None
        except BaseException:
            self._close_later(receiver)
            raise
        if self._renewer is not None and receiver.session is not None:
            self._renewer.register(receiver, receiver.session)
        _return_batches_promptly(receiver)
        return receiver

    def _close_later(self, receiver: ServiceBusReceiver) -> None:
        # Closing takes the SDK about half a second: done in the background (its messages are settled).
        closing = asyncio.create_task(receiver.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _open_unless_stopping(self, receiver: ServiceBusReceiver) -> bool:
        """Wait for a session to be granted, or give up at once when the host stops: a worker waiting
        for a session holds no message, so there is nothing to finish."""
        opening = asyncio.create_task(receiver.__aenter__())
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if opening not in done:
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, ServiceBusError):
                await opening
            return False
        opening.result()
        return True

    async def _drain_session(self, receiver: ServiceBusReceiver) -> None:
        """Messages of one session, in order, until the session stays idle or the host stops."""
        idle = self.options.session_idle_timeout.total_seconds()
        wait = min(_RECEIVE_WAIT_S, idle)
        batch = self.options.max_message_batch_size if self.trigger.many else 1
        waited = 0.0
        while not self._stopping.is_set() and waited < idle:
            got = await self._receive_batch(receiver, batch, session=True, wait=wait)
            waited = 0.0 if got else waited + wait

    async def _receive_batch(self, receiver: ServiceBusReceiver, count: int, session: bool = False,
                             wait: float = _RECEIVE_WAIT_S) -> int:
        messages = await receiver.receive_messages(max_message_count=count, max_wait_time=wait)
        if not messages:
            return 0
        if self.trigger.many:
            await self._invoke(receiver, messages, session)
        else:
            for message in messages:
                await self._invoke(receiver, [message], session)
        return len(messages)

    async def _invoke(self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage],
                      session: bool) -> None:
        if self._renewer is not None and not session:
            for message in messages:
                self._renewer.register(receiver, message)
        detail = f"queue={self.trigger.queue_name} messages={len(messages)}"
        if self.trigger.sessions:
            detail += f" session={messages[0].session_id}"
        try:
            converted = [to_function_message(m) for m in messages]
            await self.invoker.invoke(self.spec, converted if self.trigger.many else converted[0], detail=detail)
        except InvocationFailed:
            succeeded = False
        except Exception:  # a host fault (e.g. conversion): never leave the message locked and forgotten
            log.exception("function %s: could not invoke for %s", self.spec.name, detail)
            succeeded = False
        else:
            succeeded = True
        if not self.options.auto_complete_messages:
            return
        for message in messages:
            try:
                if succeeded:
                    await receiver.complete_message(message)
                else:
                    await receiver.abandon_message(message)
            except ServiceBusError as exc:  # lock lost: the broker redelivers; nothing else to do
                log.warning("function %s: could not settle message %s: %s", self.spec.name, message.message_id, exc)

