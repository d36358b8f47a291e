"""Queue state: messages, locks, sessions, dead-letter sub-queue. Pure Python, no AMQP, all in memory.

One `Queue` per topology entry, each with its dead-letter `SubQueue`. The broker calls these methods
from its single event-loop thread, so there is no locking; `sweep()` runs a few times a second to
expire locks, messages and session locks and to release scheduled messages.

Delivery count follows the AMQP header: the number of earlier failed deliveries (0 on the first one).
Abandon, lock expiry and a lost session lock each count as a failed delivery; `released` (a client
closing with prefetched messages) does not. When the count reaches MaxDeliveryCount the message moves
to the dead-letter queue with the real service's reason text.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from devstack.servicebus.codec import WireMessage, with_application_properties
from devstack.servicebus.errors import (
    BadRequest,
    InvalidOperation,
    MessageLockLost,
    MessageNotFound,
    SessionCannotBeLocked,
    SessionLockLost,
)
from devstack.servicebus.topology import QueueSettings

MessageState = Literal["active", "deferred", "scheduled"]
Outcome = Literal["complete", "abandon", "defer", "dead_letter", "release"]

MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
TTL_REASON = "TTLExpiredException"
TTL_DESCRIPTION = "The message expired and was dead lettered."

STATE_CODES: dict[MessageState, int] = {"active": 0, "deferred": 1, "scheduled": 2}


@dataclass(slots=True, eq=False)
class StoredMessage:
    seq: int
    wire: WireMessage
    enqueued_at: float
    expires_at: float | None
    state: MessageState = "active"
    scheduled_at: float | None = None
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    holder: object | None = None  # the receive link it went out on, if any

    @property
    def session_id(self) -> str | None:
        return self.wire.session_id


@dataclass(slots=True, eq=False)
class Session:
    session_id: str
    owner: object | None = None
    locked_until: float = 0.0
    state: bytes | None = None


@dataclass
class SweepResult:
    lost_sessions: list[tuple[str, object]] = field(default_factory=list)


class SubQueue:
    """Messages in sequence order with peek-lock; the base of a queue and its dead-letter queue."""

    is_dead_letter = True

    def __init__(self, settings: QueueSettings, path: str, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.path = path
        self.clock = clock
        self.messages: dict[int, StoredMessage] = {}
        self.locks: dict[uuid.UUID, StoredMessage] = {}
        self._ready: dict[str | None, list[int]] = {}  # min-heaps of sequence numbers, lazily cleaned
        self._lock_expiry: list[tuple[float, uuid.UUID]] = []
        self.on_ready: Callable[[SubQueue], None] = lambda _entity: None

    # --- what receivers get -------------------------------------------------------------------------
    @property
    def requires_session(self) -> bool:
        return False

    def _key(self, msg: StoredMessage) -> str | None:
        return msg.session_id if self.requires_session else None

    def _is_ready(self, seq: int) -> bool:
        msg = self.messages.get(seq)
        return msg is not None and msg.state == "active" and msg.lock_token is None

    def _make_ready(self, msg: StoredMessage) -> None:
        heapq.heappush(self._ready.setdefault(self._key(msg), []), msg.seq)
        self.on_ready(self)

    def _top(self, key: str | None) -> int | None:
        heap = self._ready.get(key)
        while heap and not self._is_ready(heap[0]):
            heapq.heappop(heap)
        if not heap:
            self._ready.pop(key, None)
            return None
        return heap[0]

    def has_ready(self, key: str | None = None) -> bool:
        return self._top(key) is not None

    def next_ready(self, key: str | None = None) -> StoredMessage | None:
        """The oldest available message (of a session, for session queues), expired ones dropped."""
        now = self.clock()
        while (seq := self._top(key)) is not None:
            heapq.heappop(self._ready[key])
            msg = self.messages[seq]
            if msg.expires_at is not None and msg.expires_at <= now:
                self._expire(msg)
                continue
            return msg
        return None

    def lock(self, msg: StoredMessage, holder: object, until: float | None = None) -> uuid.UUID:
        token = uuid.uuid4()
        msg.lock_token = token
        msg.holder = holder
        self.locks[token] = msg
        if until is None:
            msg.locked_until = self.clock() + self.settings.lock_duration
            self._push_lock_expiry(msg.locked_until, token)
        else:
            msg.locked_until = until
        return token

    def _push_lock_expiry(self, until: float, token: uuid.UUID) -> None:
        # Settled locks leave stale entries behind; rebuild before they outnumber the live ones, so
        # memory follows the number of locked messages, not the number ever locked.
        if len(self._lock_expiry) > 2 * len(self.locks) + 1024:
            live = [] if self.requires_session else self.locks.items()  # session locks expire with the session
            self._lock_expiry = [(m.locked_until, t) for t, m in live]
            heapq.heapify(self._lock_expiry)
        heapq.heappush(self._lock_expiry, (until, token))

    def remove(self, msg: StoredMessage) -> None:
        self.messages.pop(msg.seq, None)
        if msg.lock_token is not None:
            self.locks.pop(msg.lock_token, None)
            msg.lock_token = None

    # --- settlement ---------------------------------------------------------------------------------
    def locked(self, token: uuid.UUID) -> StoredMessage:
        msg = self.locks.get(token)
        if msg is None or (msg.locked_until <= self.clock() and not self._session_locked(msg)):
            if self.requires_session:
                raise SessionLockLost("The session lock has expired or the session was released.")
            raise MessageLockLost(
                "The lock supplied is invalid. Either the lock expired, or the message has already been "
                "removed from the queue."
            )
        return msg

    def _session_locked(self, msg: StoredMessage) -> bool:
        return False

    def settle(
        self,
        token: uuid.UUID,
        outcome: Outcome,
        reason: str | None = None,
        description: str | None = None,
    ) -> None:
        msg = self.locked(token)
        if outcome == "complete":
            self.remove(msg)
        elif outcome == "abandon":
            self._unlock(msg, failed=True)
        elif outcome == "release":
            self._unlock(msg, failed=False)
        elif outcome == "defer":
            msg.state = "deferred"
            self._unlock(msg, failed=False)
        elif outcome == "dead_letter":
            self.dead_letter(msg, reason, description)

    def renew(self, token: uuid.UUID) -> float:
        msg = self.locked(token)
        if self.requires_session:
            raise InvalidOperation("Renewing a message lock is not supported on sessionful entities.")
        msg.locked_until = self.clock() + self.settings.lock_duration
        self._push_lock_expiry(msg.locked_until, token)
        return msg.locked_until

    def _unlock(self, msg: StoredMessage, *, failed: bool) -> None:
        if msg.lock_token is not None:
            self.locks.pop(msg.lock_token, None)
        msg.lock_token = None
        msg.holder = None
        msg.locked_until = 0.0
        if failed:
            msg.delivery_count += 1
            if not self.is_dead_letter and msg.delivery_count >= self.settings.max_delivery_count:
                n = self.settings.max_delivery_count
                self.dead_letter(
                    msg, MAX_DELIVERY_REASON, f"Message could not be consumed after {n} delivery attempts."
                )
                return
        if msg.expires_at is not None and msg.expires_at <= self.clock():
            self._expire(msg)
        elif msg.state == "active":
            self._make_ready(msg)

    def dead_letter(self, msg: StoredMessage, reason: str | None, description: str | None) -> None:
        # The dead-letter queue of a dead-letter queue is itself: the message stays, unlocked.
        extra = {k: v for k, v in (("DeadLetterReason", reason), ("DeadLetterErrorDescription", description)) if v}
        if extra:
            with_application_properties(msg.wire, extra)
        self._unlock(msg, failed=False)

    def _expire(self, msg: StoredMessage) -> None:
        self.remove(msg)

    # --- operator views -----------------------------------------------------------------------------
    def peek(self, from_seq: int, count: int, session_id: str | None = None) -> list[StoredMessage]:
        candidates = (
            seq
            for seq, msg in self.messages.items()
            if seq >= from_seq and (session_id is None or msg.session_id == session_id)
        )
        return [self.messages[seq] for seq in heapq.nsmallest(max(count, 0), candidates)]

    def receive_deferred(
        self, seqs: Iterable[int], holder: object, delete: bool, session_id: str | None = None
    ) -> list[tuple[StoredMessage, uuid.UUID | None]]:
        found = []
        for seq in seqs:
            msg = self.messages.get(seq)
            if msg is None or msg.state != "deferred" or (session_id is not None and msg.session_id != session_id):
                raise MessageNotFound(f"No deferred message with sequence number {seq} in {self.path}.")
            found.append(msg)
        result: list[tuple[StoredMessage, uuid.UUID | None]] = []
        for msg in found:
            if msg.lock_token is not None:
                self.locks.pop(msg.lock_token, None)
            if delete:
                self.remove(msg)
                result.append((msg, None))
            else:
                until = self._session_until(msg) if self.requires_session else None
                result.append((msg, self.lock(msg, holder, until)))
        return result

    def _session_until(self, msg: StoredMessage) -> float | None:
        return None

    # --- time ---------------------------------------------------------------------------------------
    def sweep(self, result: SweepResult) -> None:
        now = self.clock()
        while self._lock_expiry and self._lock_expiry[0][0] <= now:
            until, token = heapq.heappop(self._lock_expiry)
            msg = self.locks.get(token)
            if msg is not None and msg.locked_until == until:
                self._unlock(msg, failed=True)

    def add_dead_lettered(self, msg: StoredMessage) -> None:
        msg.state = "active"
        msg.expires_at = None
        msg.holder = None
        self.messages[msg.seq] = msg
        self._make_ready(msg)


class Queue(SubQueue):
    """A queue from the topology: sessions, TTL, scheduling, duplicate detection, dead-lettering."""

    is_dead_letter = False

    def __init__(self, settings: QueueSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, settings.name, clock)
        self.dead_letter_queue = SubQueue(settings, f"{settings.name}/$DeadLetterQueue", clock)
        self.sessions: dict[str, Session] = {}
        self._last_seq = 0
        self._expiry: list[tuple[float, int]] = []
        self._scheduled: list[tuple[float, int]] = []
        self._seen_ids: OrderedDict[str, float] = OrderedDict()

    @property
    def requires_session(self) -> bool:
        return self.settings.requires_session

    # --- sending ------------------------------------------------------------------------------------
    def check_sendable(self, wire: WireMessage) -> None:
        if self.requires_session and not wire.session_id:
            raise InvalidOperation(
                f"The queue {self.path!r} requires sessions: a message must have a session_id to be sent to it."
            )

    def _duplicate(self, wire: WireMessage, now: float) -> bool:
        if not self.settings.requires_duplicate_detection or wire.message_id is None:
            return False
        horizon = now - self.settings.duplicate_window
        while self._seen_ids and next(iter(self._seen_ids.values())) < horizon:
            self._seen_ids.popitem(last=False)
        if wire.message_id in self._seen_ids:
            return True
        self._seen_ids[wire.message_id] = now
        return False

    def enqueue(self, wire: WireMessage, scheduled_at: float | None = None) -> StoredMessage | None:
        """Store a sent message; None when duplicate detection drops it (the sender still succeeds)."""
        self.check_sendable(wire)
        now = self.clock()
        if self._duplicate(wire, now):
            return None
        if scheduled_at is None and wire.scheduled_enqueue_ms is not None:
            scheduled_at = wire.scheduled_enqueue_ms / 1000
        self._last_seq += 1
        msg = StoredMessage(seq=self._last_seq, wire=wire, enqueued_at=now, expires_at=None)
        self.messages[msg.seq] = msg
        if scheduled_at is not None and scheduled_at > now:
            msg.state = "scheduled"
            msg.scheduled_at = scheduled_at
            heapq.heappush(self._scheduled, (scheduled_at, msg.seq))
        else:
            self._activate(msg, now)
        return msg

    def _activate(self, msg: StoredMessage, now: float) -> None:
        msg.state = "active"
        msg.enqueued_at = now
        ttls = [t for t in (self.settings.default_ttl, wire_ttl(msg.wire)) if t is not None]
        if ttls:
            msg.expires_at = now + min(ttls)
            if len(self._expiry) > 2 * len(self.messages) + 1024:  # drop entries of settled messages
                self._expiry = [(m.expires_at, m.seq) for m in self.messages.values() if m.expires_at is not None]
                heapq.heapify(self._expiry)
            heapq.heappush(self._expiry, (msg.expires_at, msg.seq))
        self._make_ready(msg)

    def cancel_scheduled(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            msg = self.messages.get(seq)
            if msg is not None and msg.state == "scheduled":
                self.remove(msg)

    # --- dead-lettering and expiry ------------------------------------------------------------------
    def dead_letter(self, msg: StoredMessage, reason: str | None, description: str | None) -> None:
        extra = {k: v for k, v in (("DeadLetterReason", reason), ("DeadLetterErrorDescription", description)) if v}
        if extra:
            with_application_properties(msg.wire, extra)
        self.remove(msg)
        msg.lock_token = None
        msg.locked_until = 0.0
        self.dead_letter_queue.add_dead_lettered(msg)

    def _expire(self, msg: StoredMessage) -> None:
        if self.settings.dead_lettering_on_expiration:
            self.dead_letter(msg, TTL_REASON, TTL_DESCRIPTION)
        else:
            self.remove(msg)

    # --- sessions -----------------------------------------------------------------------------------
    def session(self, session_id: str) -> Session:
        found = self.sessions.get(session_id)
        if found is None:
            found = self.sessions[session_id] = Session(session_id)
        return found

    def _held(self, session: Session) -> bool:
        return session.owner is not None and session.locked_until > self.clock()

    def accept_session(self, session_id: str | None, owner: object) -> Session | None:
        """Lock a named session, or the session with the oldest available message (None: none free)."""
        if not self.requires_session:
            raise InvalidOperation(f"The queue {self.path!r} does not require sessions.")
        if session_id is None:
            free = [
                (top, key)
                for key in list(self._ready)
                if key is not None and not self._held(self.session(key)) and (top := self._top(key)) is not None
            ]
            if not free:
                return None
            session_id = min(free)[1]
        session = self.session(session_id)
        if self._held(session):
            raise SessionCannotBeLocked(
                f"The requested session '{session_id}' cannot be accepted. It may be locked by another receiver."
            )
        if session.owner is not None:  # the previous lock expired without a sweep yet
            self._release_session_messages(session)
        session.owner = owner
        session.locked_until = self.clock() + self.settings.lock_duration
        return session

    def holds(self, session_id: str, owner: object) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and session.owner is owner and self._held(session)

    def owned_session(self, session_id: str, owner: object | None = None) -> Session:
        session = self.sessions.get(session_id)
        if session is None or not self._held(session) or (owner is not None and session.owner is not owner):
            raise SessionLockLost(f"The session lock for '{session_id}' has expired or was released.")
        return session

    def renew_session(self, session_id: str) -> float:
        session = self.owned_session(session_id)
        session.locked_until = self.clock() + self.settings.lock_duration
        for msg in self.locks.values():
            if msg.session_id == session_id:
                msg.locked_until = session.locked_until
        return session.locked_until

    def release_session(self, session_id: str, owner: object) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.owner is owner:
            self._release_session_messages(session)
            session.owner = None
            session.locked_until = 0.0
            self._forget_idle(session)

    def _release_session_messages(self, session: Session) -> None:
        for msg in [m for m in self.locks.values() if m.session_id == session.session_id]:
            self._unlock(msg, failed=True)

    def _forget_idle(self, session: Session) -> None:
        if session.owner is None and session.state is None and not self.has_ready(session.session_id):
            self.sessions.pop(session.session_id, None)

    def _session_locked(self, msg: StoredMessage) -> bool:
        if not self.requires_session or msg.session_id is None:
            return False
        session = self.sessions.get(msg.session_id)
        return session is not None and self._held(session) and session.owner is msg.holder

    def _session_until(self, msg: StoredMessage) -> float | None:
        return self.owned_session(msg.session_id or "").locked_until

    def lock_for_session(self, msg: StoredMessage, holder: object) -> uuid.UUID:
        return self.lock(msg, holder, self.owned_session(msg.session_id or "", holder).locked_until)

    def set_session_state(self, session_id: str, state: bytes | None) -> None:
        self.owned_session(session_id).state = state

    def get_session_state(self, session_id: str) -> bytes | None:
        return self.owned_session(session_id).state

    def receive_deferred(
        self, seqs: Iterable[int], holder: object, delete: bool, session_id: str | None = None
    ) -> list[tuple[StoredMessage, uuid.UUID | None]]:
        if self.requires_session and session_id is None:
            raise BadRequest("session-id is required to receive deferred messages from a session queue")
        if session_id is not None:
            # Session messages live and die with the session lock, whoever asked for them.
            holder = self.owned_session(session_id).owner
        return super().receive_deferred(seqs, holder, delete, session_id)

    # --- time ---------------------------------------------------------------------------------------
    def sweep(self, result: SweepResult) -> None:
        super().sweep(result)
        now = self.clock()
        while self._scheduled and self._scheduled[0][0] <= now:
            _at, seq = heapq.heappop(self._scheduled)
            msg = self.messages.get(seq)
            if msg is not None and msg.state == "scheduled":
                self._activate(msg, now)
        while self._expiry and self._expiry[0][0] <= now:
            _at, seq = heapq.heappop(self._expiry)
            msg = self.messages.get(seq)
            # A locked message expires when its lock ends (next_ready drops it then).
            if msg is not None and msg.lock_token is None and msg.state == "active":
                self._expire(msg)
        for session in list(self.sessions.values()):
            if session.owner is not None and session.locked_until <= now:
                owner = session.owner
                self._release_session_messages(session)
                session.owner = None
                result.lost_sessions.append((session.session_id, owner))
                self._forget_idle(session)
        self.dead_letter_queue.sweep(result)


def wire_ttl(wire: WireMessage) -> float | None:
    return wire.ttl_ms / 1000 if wire.ttl_ms else None
