"""The Service Bus side of the emulator: which link is what, deliveries in and out, settlement, sessions.

Connections (see server.py) hand proton events here. Everything runs on one asyncio loop thread.
Link roles, seen from the emulator:
- `$cbs` pair: put-token requests in, answers out (any token is accepted: the emulator has no auth);
- `<queue>/$management` (or `<queue>/$DeadLetterQueue/$management`) pair: see management.py;
- a receiver on `amqps://host/<queue>`: a client sending messages (`Producer`);
- a sender on `amqps://host/<queue>[/$DeadLetterQueue]`: a client receiving (`Consumer`), optionally
  locked to a session (source filter `com.microsoft:session-filter`).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from proton import Condition, Data, Delivery, Link, Message, ProtonException, Terminus, int32, symbol

from devstack.servicebus import management
from devstack.servicebus.codec import MalformedMessage, decode_message, encode_delivery, ms, split_batch
from devstack.servicebus.entities import STATE_CODES, Queue, StoredMessage, SubQueue, SweepResult
from devstack.servicebus.errors import (
    BrokerError,
    EntityNotFound,
    InvalidOperation,
    OperationTimeout,
    SessionLockLost,
)
from devstack.servicebus.frames import BATCH_FORMAT
from devstack.servicebus.topology import Topology

if TYPE_CHECKING:
    from devstack.servicebus.server import AmqpConnection

log = logging.getLogger(__name__)

SESSION_FILTER = symbol("com.microsoft:session-filter")
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
OPERATION_TIMEOUT = symbol("com.microsoft:timeout")
DEAD_LETTER_CONDITION = "com.microsoft:dead-letter"
DOTNET_EPOCH_TICKS = 621355968000000000
DEFAULT_SESSION_WAIT = 60.0  # the service's default; the SDK itself gives up after 65 s
PRODUCER_CREDIT = 500


def dotnet_ticks(epoch_seconds: float) -> int:
    return DOTNET_EPOCH_TICKS + int(epoch_seconds * 10_000_000)


@dataclass(eq=False)
class Producer:
    queue: Queue


@dataclass(eq=False)
class ManagementNode:
    entity: SubQueue


@dataclass(eq=False)
class Cbs:
    pass


@dataclass(eq=False)
class Consumer:
    conn: AmqpConnection
    link: Link
    entity: SubQueue
    delete: bool  # RECEIVE_AND_DELETE: deliveries go out settled and leave the queue
    session_id: str | None = None


@dataclass(eq=False)
class PendingSession:
    """A NEXT_AVAILABLE session receiver whose attach is held until a session is free or time is up."""

    conn: AmqpConnection
    link: Link
    queue: Queue
    delete: bool
    deadline: float


@dataclass
class _Address:
    entity: SubQueue
    management: bool


class Broker:
    def __init__(self, topology: Topology, clock: Any = time.time) -> None:
        self.topology = topology
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        for settings in topology.queues:
            queue = Queue(settings, clock)
            queue.on_ready = self._ready
            queue.dead_letter_queue.on_ready = self._ready
            self.queues[settings.name.lower()] = queue
        self._topics = {t.name.lower() for t in topology.topics}
        self.consumers: dict[SubQueue, list[Consumer]] = {}
        self.pending: list[PendingSession] = []
        self._dirty: set[SubQueue] = set()
        self._rotation = itertools.count()
        self.schedule: Any = None  # set by the server: call_soon(callback)

    # --- addresses ----------------------------------------------------------------------------------
    def resolve(self, address: str | None) -> _Address:
        if not address:
            raise EntityNotFound("The link has no address.")
        path = urlparse(address).path if "://" in address else address
        parts = [p for p in path.strip("/").split("/") if p]
        is_management = bool(parts) and parts[-1].lower() == "$management"
        if is_management:
            parts = parts[:-1]
        if not parts:
            raise EntityNotFound(f"The messaging entity '{address}' could not be found.")
        queue = self.queues.get(parts[0].lower())
        if queue is None:
            if parts[0].lower() in self._topics:
                raise EntityNotFound(f"Topic '{parts[0]}' is in the topology but topics are not served yet.")
            raise EntityNotFound(f"The messaging entity '{parts[0]}' could not be found.")
        rest = [p.lower() for p in parts[1:]]
        if rest == []:
            return _Address(queue, is_management)
        if rest == ["$deadletterqueue"]:
            return _Address(queue.dead_letter_queue, is_management)
        raise EntityNotFound(f"The messaging entity '{address}' could not be found.")

    # --- attach -------------------------------------------------------------------------------------
    def on_link_open(self, conn: AmqpConnection, link: Link) -> None:
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        try:
            if address == "$cbs" or (target := self.resolve(address)).management:
                link.ctx = Cbs() if address == "$cbs" else ManagementNode(target.entity)
                self._accept(link)
                if link.is_sender:
                    conn.reply_links[address.lower()] = link
                else:
                    link.flow(PRODUCER_CREDIT)  # the SDK ignores credit; other AMQP clients wait for it
                return
            if link.is_sender:
                self._open_consumer(conn, link, target.entity)
            else:
                if not isinstance(target.entity, Queue):
                    raise InvalidOperation("Messages cannot be sent to a dead-letter queue.")
                link.ctx = Producer(target.entity)
                self._accept(link)
                link.flow(PRODUCER_CREDIT)
        except BrokerError as exc:
            log.info("refusing link %r to %r: %s", link.name, address, exc)
            refuse(link, exc)

    def _accept(self, link: Link, session_id: str | None = None, locked_until: float | None = None) -> None:
        link.source.address = link.remote_source.address
        link.target.address = link.remote_target.address
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if session_id is not None:
            link.source.filter.put_object({SESSION_FILTER: session_id})
        if locked_until is not None:
            link.properties = {LOCKED_UNTIL_UTC: dotnet_ticks(locked_until)}
        link.open()

    def _open_consumer(self, conn: AmqpConnection, link: Link, entity: SubQueue) -> None:
        delete = link.remote_snd_settle_mode == Link.SND_SETTLED
        filters = _data_object(link.remote_source.filter) or {}
        wants_session = SESSION_FILTER in filters
        if not isinstance(entity, Queue) or not entity.requires_session:
            if wants_session:
                raise InvalidOperation(f"The entity '{entity.path}' does not require sessions.")
            self._register(Consumer(conn, link, entity, delete))
            self._accept(link)
            return
        if not wants_session:
            raise InvalidOperation(
                f"The queue '{entity.path}' requires sessions: open a session receiver (session_id or "
                "NEXT_AVAILABLE_SESSION)."
            )
        requested = filters[SESSION_FILTER]
        session_id = None if requested is None else str(requested)
        self.sweep()  # detach receivers whose session lock has just expired before handing sessions out
        consumer = Consumer(conn, link, entity, delete)
        session = entity.accept_session(session_id, consumer)
        if session is not None:
            self._start_session(consumer, session.session_id, session.locked_until)
            return
        props = _data_props(link)
        wait = props.get(OPERATION_TIMEOUT)
        wait_s = float(wait) / 1000 if wait else DEFAULT_SESSION_WAIT
        self.pending.append(PendingSession(conn, link, entity, delete, self.clock() + wait_s))

    def _start_session(self, consumer: Consumer, session_id: str, locked_until: float) -> None:
        consumer.session_id = session_id
        self._register(consumer)
        self._accept(consumer.link, session_id, locked_until)
        consumer.conn.schedule_flush()
        self._ready(consumer.entity)

    def _register(self, consumer: Consumer) -> None:
        consumer.link.ctx = consumer
        self.consumers.setdefault(consumer.entity, []).append(consumer)

    def _try_pending(self, queue: Queue) -> None:
        for pending in [p for p in self.pending if p.queue is queue]:
            consumer = Consumer(pending.conn, pending.link, queue, pending.delete)
            session = queue.accept_session(None, consumer)
            if session is None:
                return
            self.pending.remove(pending)
            self._start_session(consumer, session.session_id, session.locked_until)

    # --- detach -------------------------------------------------------------------------------------
    def on_link_close(self, conn: AmqpConnection, link: Link) -> None:
        ctx = getattr(link, "ctx", None)
        self.pending = [p for p in self.pending if p.link != link]
        if isinstance(ctx, Consumer):
            self._drop_consumer(ctx)
        elif isinstance(ctx, Producer):
            conn.scanner.forget(link.name)
        for key, reply in list(conn.reply_links.items()):
            if reply == link:
                del conn.reply_links[key]
        link.ctx = None

    def _drop_consumer(self, consumer: Consumer) -> None:
        listed = self.consumers.get(consumer.entity, [])
        if consumer in listed:
            listed.remove(consumer)
        if not listed:
            self.consumers.pop(consumer.entity, None)
        if consumer.session_id is not None and isinstance(consumer.entity, Queue):
            consumer.entity.release_session(consumer.session_id, consumer)
            self._ready(consumer.entity)

    def on_connection_gone(self, conn: AmqpConnection) -> None:
        for link in list(conn.all_links()):
            if getattr(link, "ctx", None) is not None:
                self.on_link_close(conn, link)
        self.pending = [p for p in self.pending if p.conn is not conn]

    # --- flow and outgoing deliveries ---------------------------------------------------------------
    def on_flow(self, link: Link) -> None:
        consumer = getattr(link, "ctx", None)
        if not isinstance(consumer, Consumer):
            return
        self._pump(consumer.entity)
        if link.drain_mode and link.credit > 0:
            link.drained()
            consumer.conn.schedule_flush()

    def _ready(self, entity: SubQueue) -> None:
        if not self._dirty and self.schedule is not None:
            self.schedule(self._run_pumps)
        self._dirty.add(entity)

    def _run_pumps(self) -> None:
        while self._dirty:
            entity = self._dirty.pop()
            try:
                if isinstance(entity, Queue) and entity.requires_session:
                    self._try_pending(entity)
                self._pump(entity)
            except Exception:
                log.exception("delivering from %s failed", entity.path)

    def _pump(self, entity: SubQueue) -> None:
        consumers = self.consumers.get(entity)
        if not consumers:
            return
        progress = True
        while progress:
            progress = False
            start = next(self._rotation) % len(consumers)
            for consumer in consumers[start:] + consumers[:start]:
                if consumer.link.credit <= 0:
                    continue
                if (
                    consumer.session_id is not None
                    and isinstance(entity, Queue)
                    and not entity.holds(consumer.session_id, consumer)
                ):
                    continue  # its session lock just expired; the next sweep detaches it
                msg = entity.next_ready(consumer.session_id)
                if msg is None:
                    continue
                self._deliver(consumer, msg)
                progress = True

    def _deliver(self, consumer: Consumer, msg: StoredMessage) -> None:
        entity = consumer.entity
        if consumer.delete:
            entity.remove(msg)
            token = None
        elif consumer.session_id is not None and isinstance(entity, Queue):
            token = entity.lock_for_session(msg, consumer)
        else:
            token = entity.lock(msg, consumer)
        payload = encode_delivery(msg.wire, msg.delivery_count, message_annotations(msg, token))
        # The SDK reads the delivery tag as the lock token in .NET GUID byte order.
        delivery = consumer.link.delivery((token or uuid.uuid4()).bytes_le)
        delivery.token = token
        consumer.link.stream(payload)
        consumer.link.advance()
        if consumer.delete:
            delivery.settle()
        consumer.conn.schedule_flush()

    # --- incoming deliveries ------------------------------------------------------------------------
    def on_delivery(self, conn: AmqpConnection, delivery: Delivery) -> None:
        link = delivery.link
        if link.is_sender:
            self._on_settlement(conn, delivery)
            return
        # Take complete deliveries in arrival order so each one gets its own message-format.
        while (current := link.current) is not None and (current.aborted or not current.partial):
            if not current.aborted and not current.readable:
                break
            fmt = conn.scanner.next_format(link.name)
            if current.aborted:
                link.advance()
                current.settle()
                continue
            payload = link.recv(current.pending) or b""
            link.advance()
            self._on_transfer(conn, link, current, fmt, payload)

    def _on_transfer(self, conn: AmqpConnection, link: Link, delivery: Delivery, fmt: int, payload: bytes) -> None:
        ctx = getattr(link, "ctx", None)
        try:
            if isinstance(ctx, Producer):
                messages = split_batch(payload) if fmt == BATCH_FORMAT else [decode_message(payload)]
                for wire in messages:  # a batch is all or nothing
                    ctx.queue.check_sendable(wire)
                for wire in messages:
                    ctx.queue.enqueue(wire)
                delivery.update(Delivery.ACCEPTED)
            elif isinstance(ctx, ManagementNode | Cbs):
                decode_message(payload)  # proton's Message.decode takes garbage silently: validate first
                request = Message()
                request.decode(payload)
                delivery.update(Delivery.ACCEPTED)
                if isinstance(ctx, Cbs):
                    self._reply(conn, "$cbs", request, cbs_response(request))
                else:
                    response = management.handle(self, ctx.entity, link, request)
                    self._reply(conn, request.reply_to or "", request, response)
            else:
                raise InvalidOperation("This link does not accept messages.")
        except BrokerError as exc:
            log.info("rejecting transfer on %r: %s", link.name, exc)
            delivery.local.condition = error_condition(exc)
            delivery.update(Delivery.REJECTED)
        except (MalformedMessage, ProtonException, ValueError, TypeError) as exc:
            log.info("rejecting malformed transfer on %r: %s", link.name, exc)
            delivery.local.condition = Condition(
                "amqp:decode-error", f"The message could not be decoded: {exc}", {symbol("field"): "payload"}
            )
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        if link.credit < PRODUCER_CREDIT // 2:
            link.flow(PRODUCER_CREDIT - link.credit)

    def _reply(self, conn: AmqpConnection, reply_to: str, request: Message, response: Message) -> None:
        link = conn.reply_links.get(reply_to.lower())
        if link is None:
            log.warning("no reply link %r on this connection; response dropped", reply_to)
            return
        response.correlation_id = request.id
        delivery = link.delivery(uuid.uuid4().bytes)
        link.stream(response.encode())
        link.advance()
        delivery.settle()

    def _on_settlement(self, conn: AmqpConnection, delivery: Delivery) -> None:
        consumer = getattr(delivery.link, "ctx", None)
        token = getattr(delivery, "token", None)
        if not delivery.updated or delivery.local_state or not isinstance(consumer, Consumer) or token is None:
            if delivery.remote_state or delivery.settled:
                delivery.settle()
            return
        state = delivery.remote_state
        remote = delivery.remote
        try:
            if state == Delivery.ACCEPTED:
                consumer.entity.settle(token, "complete")
            elif state == Delivery.RELEASED:
                consumer.entity.settle(token, "release")
            elif state == Delivery.MODIFIED:
                consumer.entity.settle(token, "defer" if remote.undeliverable else "abandon")
            elif state == Delivery.REJECTED:
                reason, description = dead_letter_details(remote.condition)
                consumer.entity.settle(token, "dead_letter", reason, description)
            else:
                return  # RECEIVED: progress report, nothing to settle yet
            # Echo the outcome, settled; a rejected echo must carry no error or the SDK sees a failure.
            if state == Delivery.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
            delivery.update(state)
        except BrokerError as exc:
            delivery.local.condition = error_condition(exc)
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        conn.schedule_flush()

    # --- time ---------------------------------------------------------------------------------------
    def sweep(self) -> None:
        result = SweepResult()
        for queue in self.queues.values():
            queue.sweep(result)
        for session_id, owner in result.lost_sessions:
            if isinstance(owner, Consumer):
                log.info("session %r lock expired on %s", session_id, owner.entity.path)
                self._drop_consumer(owner)
                owner.link.ctx = None
                owner.link.condition = error_condition(
                    SessionLockLost(f"The session lock for '{session_id}' has expired.")
                )
                owner.link.close()
                owner.conn.schedule_flush()
        now = self.clock()
        for pending in [p for p in self.pending if p.deadline <= now]:
            self.pending.remove(pending)
            refuse(pending.link, OperationTimeout("No session was available before the operation timed out."))
            pending.conn.schedule_flush()


def refuse(link: Link, error: BrokerError) -> None:
    """Attach with a null source/target, then detach with the error: the SDK raises the mapped exception."""
    link.ctx = None
    link.source.type = Terminus.UNSPECIFIED  # proton then encodes the terminus as null
    link.target.type = Terminus.UNSPECIFIED
    link.condition = error_condition(error)
    link.open()
    link.close()


def error_condition(error: BrokerError) -> Condition:
    # pyamqp reads condition, description and info by position: always send all three.
    return Condition(error.condition, str(error), {symbol("error-type"): type(error).__name__})


def message_annotations(msg: StoredMessage, token: uuid.UUID | None) -> dict[str, Any]:
    annotations: dict[str, Any] = {
        "x-opt-sequence-number": msg.seq,
        "x-opt-enqueued-time": ms(msg.enqueued_at),
        "x-opt-message-state": int32(STATE_CODES[msg.state]),
    }
    if token is not None:
        annotations["x-opt-lock-token"] = token
        annotations["x-opt-locked-until"] = ms(msg.locked_until)
    if msg.scheduled_at is not None:
        annotations["x-opt-scheduled-enqueue-time"] = ms(msg.scheduled_at)
    return annotations


def dead_letter_details(condition: Condition | None) -> tuple[str | None, str | None]:
    if condition is None:
        return None, None
    info = {str(k): v for k, v in (condition.info or {}).items()}
    reason = info.get("DeadLetterReason")
    description = info.get("DeadLetterErrorDescription", condition.description)
    return (None if reason is None else str(reason)), (None if description is None else str(description))


def cbs_response(request: Message) -> Message:
    props = request.properties or {}
    if props.get("operation") != "put-token":
        return Message(properties={"status-code": int32(400), "status-description": "Unsupported CBS operation."})
    return Message(properties={"status-code": int32(200), "status-description": "OK"})


def _data_object(data: Data) -> Any:
    data.rewind()
    if data.next() is None:
        return None
    return data.get_object()


def _data_props(link: Link) -> dict[Any, Any]:
    props = link.remote_properties
    return dict(props) if props else {}
