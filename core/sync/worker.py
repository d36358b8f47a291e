"""A batch of queued changes of one session: apply them, and decide what each failure becomes.

The apply function gets up to maxMessageBatchSize messages of one session (a bucket of records,
core.sync.ingest). The worker cuts them into lanes, one per record, coalesces each lane
(core.sync.batch) and runs the lanes side by side, a lane's changes in order. Every change ends
in one of these, per record, so one record never fails or delays the rest of its batch:
- applied or skipped (with the reason; coalesced changes are skipped naming the change that
  carried them): recorded in the activity log;
- a transient failure: the change is sent again as a scheduled message of the same session after
  a capped exponential backoff, its record is held so its later changes queue behind it (order
  holds), and the activity log says `retrying`. A target that is down or throttling is retried for
  `retry_horizon` (a day by default); other transient causes (a parent not there yet, a target row
  deleted behind the link) for `max_attempts` attempts;
- a permanent failure, or a transient one past its limit: recorded in the error log with its
  category, full text, attempts and the change itself.
Python functions cannot settle messages, so the whole batch completes when this returns; if the
worker itself cannot record or re-send (Table Storage or Service Bus down), it raises and the host
abandons the batch: the broker redelivers it, and applying a change twice is harmless (echo and
no-op detection).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import ValidationError

from core.connectors.errors import ConnectorError, ThrottledError, TransientError
from core.connectors.http import patience
from core.events.model import ChangeEvent
from core.maps import MapSet, encode_key
from core.maps.model import Side
from core.ops import telemetry
from core.store.activity import ActivityEntry
from core.store.errors import ErrorEntry
from core.store.holds import Hold
from core.store.queues import QueuedChange
from core.sync.apply import Applier, Result, record_label
from core.sync.batch import Step, coalesce
from core.sync.decide import other, side_name
from core.sync.errors import BadChange, category_of, error_text, is_transient
from core.sync.ingest import LinkFinder, capped, event_order_key
from core.sync.modes import LABELS, Admission, MapState

log = logging.getLogger(__name__)
_BY_ROW_ID = "dataverse:"  # core.sync.decide.record_label's name of a Dataverse change it cannot key
Handled = Literal["applied", "skipped", "failed", "retrying", "parked"]

# Application properties of a change sent again (the message id changes each time: duplicate detection).
ORIGIN = "origin_id"  # the message id the change first had: its name in the activity and error logs
ATTEMPTS = "attempts"  # failed attempts before this message
FAULTS = "faults"  # of those, failures counted against max_attempts (not outages)
FIRST_FAILED = "first_failed_at"
WAITS = "waits"  # times the change was sent on behind a held record
CATCH_UP = "catch_up"  # sent by a map's catch-up (core.sync.catchup): applied while the map catches up
LANES = 32  # records of a batch applied at once
IN_CALL_WAIT_S = 2.0  # at most this long a call retries within an invocation before the change is sent again


class ActivityRecorder(Protocol):
    async def record(self, entries: list[ActivityEntry]) -> None: ...


class ErrorRecorder(Protocol):
    async def record(self, entry: ErrorEntry) -> ErrorEntry: ...


class Requeue(Protocol):
    async def send(self, changes: list[QueuedChange]) -> None: ...


class Modes(Protocol):
    """The maps' modes (core.sync.catchup.MapModes): whether a change applies, parks or drops."""

    async def admission(self, map_name: str, *, from_catch_up: bool) -> tuple[Admission, MapState]: ...
    async def park(self, event: ChangeEvent, *, lane: str, session_id: str, origin: str, state: MapState) -> str: ...
    async def auto_pause(self, map_name: str, side: Side, reason: str) -> MapState: ...


class QueueWaits(Protocol):
    def waited(self, map_name: str, source: str, seconds: float) -> None: ...


class Holds(Protocol):
    async def holds(self, session_id: str) -> dict[str, Hold]: ...
    async def hold(self, session_id: str, hold: Hold) -> None: ...
    async def release(self, session_id: str, lane: str) -> None: ...


@dataclass(frozen=True)
class Delivery:
    body: bytes
    message_id: str
    session_id: str
    delivery_count: int
    properties: Mapping[str, str] = field(default_factory=dict)
    enqueued_at: datetime | None = None  # when the broker took the message (its queue wait, for the metrics)

    @property
    def origin(self) -> str:
        return self.properties.get(ORIGIN) or self.message_id

    def _count(self, name: str) -> int:
        try:
            return int(self.properties.get(name) or 0)
        except ValueError:
            return 0

    @property
    def attempt(self) -> int:
        """This delivery's attempt: earlier messages' failures plus the broker's own redeliveries."""
        return self._count(ATTEMPTS) + max(1, self.delivery_count)

    @property
    def fault_attempt(self) -> int:
        return self._count(FAULTS) + max(1, self.delivery_count)

    @property
    def first_failed_at(self) -> datetime | None:
        text = self.properties.get(FIRST_FAILED)
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            return None


def _predecessor(delivery: Delivery) -> str:
    """A short hash of the message a change is sent on from. Counters alone repeat: a change parked and then
    sent by a catch-up starts counting afresh, and the changes queue's duplicate detection (10 minutes)
    would silently drop a `retry-1` it had already seen from the same origin during the outage."""
    return hashlib.sha1(delivery.message_id.encode()).hexdigest()[:8]


def backoff_seconds(attempt: int, base: float = 0.5, cap: float = 300.0) -> float:
    """Wait after failed attempt n (n >= 1): base, 2*base, 4*base, ... capped."""
    return min(cap, base * 2 ** max(0, attempt - 1))


@dataclass
class _Item:
    delivery: Delivery
    event: ChangeEvent


@dataclass
class _Outcome:
    """What a batch produced, written out once at its end."""

    activity: list[ActivityEntry] = field(default_factory=list)
    requeue: list[QueuedChange] = field(default_factory=list)
    handled: dict[str, Handled] = field(default_factory=dict)  # by message id
    # (map, `dataverse:<row id>`) -> the record's key (or the label again: not linked), as this batch found it
    keys: dict[tuple[str, str], str] = field(default_factory=dict)


class Worker:
    def __init__(self, applier: Applier, activity: ActivityRecorder, errors: ErrorRecorder, *,
                 requeue: Requeue, holds: Holds, links: LinkFinder | None = None, max_attempts: int = 5,
                 retry_horizon: timedelta = timedelta(days=1), backoff_base: float = 0.5,
                 backoff_cap: float = 300.0, engine_user: str = "", modes: Modes | None = None,
                 auto_pause_after: timedelta | None = None, waits: QueueWaits | None = None) -> None:
        self.applier = applier
        self.waits = waits  # told how long each change waited on the queue before this batch took it
        self.activity = activity
        self.errors = errors
        self.requeue = requeue
        self.holds = holds
        self.links = links
        self.max_attempts = max_attempts
        self.retry_horizon = retry_horizon
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.engine_user = engine_user
        self.modes = modes
        self.auto_pause_after = auto_pause_after  # a target failing this long pauses the map (None: never)

    @property
    def maps(self) -> MapSet:
        return self.applier.maps

    async def handle(self, delivery: Delivery) -> Handled:
        """One change (a batch of one)."""
        return (await self.handle_batch([delivery]))[delivery.message_id]

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> dict[str, Handled]:
        """Apply a batch of one session's changes; what became of each, by message id."""
        out = _Outcome()
        items: list[_Item] = []
        for delivery in deliveries:
            try:
                items.append(_Item(delivery, ChangeEvent.from_json(delivery.body)))
            except ValidationError as error:
                await self._fail(out, delivery, None, BadChange(f"not a change event: {error}"))
        by_session: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_session[item.delivery.session_id].append(item)
        self._queue_waits(items)
        for session_id, session_items in by_session.items():
            await self._session(out, session_id, session_items)
        await self.requeue.send(out.requeue)
        await self._name_by_key(out)
        await self.activity.record(out.activity)
        return out.handled

    async def _name_by_key(self, out: _Outcome) -> None:
        """A Dataverse change not applied (coalesced, retrying, parked) was logged under its row id; name it by
        its record's key when the record is linked, as applied ones are, so a record's history reads under one key."""
        for entry in out.activity:
            if entry.source == "dataverse":
                entry.key = await self._linked_label(out, entry.map, entry.key)

    async def _linked_label(self, out: _Outcome, map_name: str, label: str) -> str:
        """`dataverse:<row id>` as the linked record's key, or as it is (not linked yet, or unknown map). The batch
        knows most keys already (`out.keys`: from the lanes' link lookups and the applied changes); the link is
        read once per record otherwise."""
        row_id = label.removeprefix(_BY_ROW_ID)
        if row_id == label or not row_id or self.links is None or map_name not in self.maps:
            return label
        if (map_name, label) not in out.keys:
            link = await self.links.find(map_name, "dataverse", row_id)
            out.keys[(map_name, label)] = encode_key(tuple(link.key)) if link is not None else label
        return out.keys[(map_name, label)]

    def _queue_waits(self, items: list[_Item]) -> None:
        """First deliveries only: a retry was scheduled to wait, which says nothing of the queue's backlog."""
        if self.waits is None:
            return
        now = datetime.now(UTC)
        for item in items:
            d = item.delivery
            if d.enqueued_at is not None and d.delivery_count <= 1 and ATTEMPTS not in d.properties:
                self.waits.waited(item.event.map or "unmapped", item.event.source,
                                  (now - d.enqueued_at).total_seconds())

    async def _session(self, out: _Outcome, session_id: str, items: list[_Item]) -> None:
        lanes: dict[str, list[_Item]] = defaultdict(list)
        parked: set[str] = set()
        for item in items:
            lane = await self._lane(out, item.event)
            if await self._admitted(out, item, lane):
                lanes[lane].append(item)
            else:
                parked.add(lane)
        holds = await self.holds.holds(session_id)
        for lane in parked - set(lanes):
            if lane in holds:  # the retry it waited for was parked too: nothing to wait for now
                await self.holds.release(session_id, lane)
        gate = asyncio.Semaphore(LANES)

        async def run(lane: str, lane_items: list[_Item]) -> None:
            async with gate:
                with _apply_span(out, lane_items):
                    await self._lane_run(out, session_id, lane, lane_items, holds.get(lane))

        await asyncio.gather(*(run(lane, lane_items) for lane, lane_items in lanes.items()))

    async def _admitted(self, out: _Outcome, item: _Item, lane: str) -> bool:
        """Whether the change is applied now; if not, it was parked (map paused) or dropped (map stopped)."""
        event = item.event
        if self.modes is None or not event.map or event.map not in self.maps:
            return True
        admission, state = await self.modes.admission(
            event.map, from_catch_up=item.delivery.properties.get(CATCH_UP) == "1")
        if admission == "apply":
            return True
        label = record_label(event, self.maps)
        if admission == "park":
            reason = await self.modes.park(event, lane=lane, session_id=item.delivery.session_id,
                                           origin=item.delivery.origin, state=state)
            self._record(out, item, "parked", reason, label)
        else:
            why = f": {state.reason}" if state.reason else ""
            self._record(out, item, "skipped", f"dropped: the map is {LABELS[state.mode]}{why}", label)
        return False

    async def _lane(self, out: _Outcome, event: ChangeEvent) -> str:
        """The record's lane: `<map>|<order key>`, found through the link index when the event lacks it (the
        link found names the record in the logs too: `out.keys`)."""
        table_map = self.maps.get(event.map or "") if event.map else None
        if table_map is None:
            return f"{event.map}|@unknown"
        order = event_order_key(event, table_map)
        if order is None and event.source == "dataverse" and event.record_id and self.links is not None:
            link = await self.links.find(table_map.name, "dataverse", event.record_id)
            if link is not None:
                order = table_map.without_company(tuple(link.key))
                out.keys[(table_map.name, record_label(event))] = encode_key(tuple(link.key))
        if order is None:
            order = ("@id", (event.record_id or event.event_id).lower())
        return f"{table_map.name}|{encode_key(order).upper()}"

    async def _lane_run(self, out: _Outcome, session_id: str, lane: str, items: list[_Item],
                        hold: Hold | None) -> None:
        now = datetime.now(UTC)
        if hold is not None:
            heads = [i for i in items if i.delivery.message_id == hold.head]
            if heads:
                items = heads + [i for i in items if i.delivery.message_id != hold.head]
            elif now < hold.until + timedelta(seconds=self.backoff_cap + 60):
                # The retry this record waits for is not due yet: queue these changes behind it.
                due = max(hold.until, now)
                for n, item in enumerate(items, start=1):
                    self._send_on(out, item, item.event, due + timedelta(milliseconds=n), waiting=True)
                    self._record(out, item, "retrying", f"waiting behind an earlier change of this record, "
                                 f"due {hold.until.isoformat()}", record_label(item.event, self.maps))
                return
            # else: the retry never came (lost, or expired): release the record rather than hold it forever
        steps = coalesce(items, [i.event for i in items], engine_user=self.engine_user)
        for index, step in enumerate(steps):
            held = await self._step(out, step, later=steps[index + 1:])
            if isinstance(held, MapState):  # the map was paused for its target's outage: the lane parks
                for rest in steps[index:]:
                    for each in [*rest.absorbed, rest.item]:
                        reason = await self._park(each, lane, held)
                        self._record(out, each, "parked", reason, record_label(each.event, self.maps))
                break
            if held is not None:
                await self.holds.hold(session_id, Hold(lane, held.head, held.until))
                return
        if hold is not None:
            await self.holds.release(session_id, lane)

    async def _park(self, item: _Item, lane: str, state: MapState) -> str:
        assert self.modes is not None
        return await self.modes.park(item.event, lane=lane, session_id=item.delivery.session_id,
                                     origin=item.delivery.origin, state=state)

    async def _step(self, out: _Outcome, step: Step[_Item], later: list[Step[_Item]]) -> Hold | MapState | None:
        """Apply one step; on a transient failure, send it and the lane's later changes on, and hold; when the
        target has been down too long, pause the map (the map's state: the caller parks the lane)."""
        item, event = step.item, step.event
        for absorbed in step.absorbed:
            self._record(out, absorbed, "skipped", f"coalesced: a later change of this record in the same batch "
                         f"({item.delivery.origin}) carries it", record_label(absorbed.event, self.maps))
        try:
            # A short patience in the connectors: the session's other records wait while this call retries,
            # and a change the target cannot take now is better sent again later (scheduled, below).
            with patience(max_retries=1, max_total_wait=IN_CALL_WAIT_S):
                result = await self.applier.apply(event,
                                                  last_attempt=item.delivery.fault_attempt >= self.max_attempts)
        except Exception as error:
            paused = await self._auto_pause(item, event, error)
            if paused is not None:
                return paused
            retry = self._retry_at(item.delivery, error)
            if retry is None:
                await self._fail(out, item.delivery, event, error)
                return None
            label = record_label(event, self.maps)
            log.info("change %s: attempt %d failed (%s), retrying at %s", item.delivery.origin,
                     item.delivery.attempt, type(error).__name__, retry.isoformat())
            self._record(out, item, "retrying", f"{category_of(error)}: {_short(error)}", label)
            head = self._send_on(out, item, event, retry, error=error)
            for n, step_after in enumerate(later, start=1):
                for each in [*step_after.absorbed, step_after.item]:
                    self._send_on(out, each, each.event, retry + timedelta(milliseconds=n), waiting=True)
                    self._record(out, each, "retrying", "waiting behind an earlier change of this record",
                                 record_label(each.event, self.maps))
            return Hold("", head, retry)
        self._applied(out, item, event, result)
        return None

    async def _auto_pause(self, item: _Item, event: ChangeEvent, error: BaseException) -> MapState | None:
        """Pause the map when its target has failed with outage errors for `auto_pause_after` already: its
        changes park (rather than pile up as retries, then in the error log) until a probe of the target
        succeeds and the map catches up by itself (core.sync.catchup)."""
        if self.modes is None or self.auto_pause_after is None or not _outage(error) or not event.map:
            return None
        first = item.delivery.first_failed_at
        if first is None or datetime.now(UTC) - first < self.auto_pause_after:
            return None
        target = other(event.source)
        seconds = int((datetime.now(UTC) - first).total_seconds())
        state = await self.modes.auto_pause(event.map, target,
                                            f"{side_name(target)} has failed for {seconds} s: {_short(error)}")
        return state if state.admission() == "park" else None

    def _retry_at(self, delivery: Delivery, error: BaseException) -> datetime | None:
        """When to try again, or None: the error log takes it now."""
        if not is_transient(error):
            return None
        now = datetime.now(UTC)
        if _outage(error):
            started = delivery.first_failed_at or now
            if now - started >= self.retry_horizon:
                return None
        elif delivery.fault_attempt >= self.max_attempts:
            return None
        wait = backoff_seconds(delivery.attempt, self.backoff_base, self.backoff_cap)
        if isinstance(error, ThrottledError):  # the target said how long to stay away
            wait = max(wait, min(error.retry_after, self.backoff_cap))
        return now + timedelta(seconds=wait)

    def _send_on(self, out: _Outcome, item: _Item, event: ChangeEvent, at: datetime, *,
                 error: BaseException | None = None, waiting: bool = False) -> str:
        """Queue the change again in its session, due at `at`; its new message id."""
        delivery = item.delivery
        props = {k: v for k, v in delivery.properties.items()
                 if k not in {"map", "source", "entity", "operation"}}
        props[ORIGIN] = delivery.origin
        if waiting:
            waits = delivery._count(WAITS) + 1
            props[WAITS] = str(waits)
            message_id = capped(f"{delivery.origin}|wait-{delivery.attempt}-{waits}.{_predecessor(delivery)}")
        else:
            props[ATTEMPTS] = str(delivery.attempt)
            props[FAULTS] = str(delivery.fault_attempt - (1 if error is not None and _outage(error) else 0))
            props[FIRST_FAILED] = (delivery.first_failed_at or datetime.now(UTC)).isoformat()
            props.pop(WAITS, None)
            message_id = capped(f"{delivery.origin}|retry-{delivery.attempt}.{_predecessor(delivery)}")
        out.requeue.append(QueuedChange(event=event, session_id=delivery.session_id, message_id=message_id,
                                        properties=props, scheduled_at=at))
        out.handled[delivery.message_id] = "retrying"
        return message_id

    def _applied(self, out: _Outcome, item: _Item, event: ChangeEvent, result: Result) -> None:
        latency = (datetime.now(UTC) - event.occurred_at).total_seconds() * 1000
        if event.source == "dataverse" and event.map and not result.key.startswith(_BY_ROW_ID):
            out.keys[(event.map, record_label(event))] = result.key
        self._record(out, item, result.outcome, result.reason, result.key, target_id=result.target_id,
                     latency_ms=latency if result.outcome == "applied" else None)

    def _record(self, out: _Outcome, item: _Item, outcome: Handled, reason: str, key: str, *,
                target_id: str | None = None, latency_ms: float | None = None, detail: str | None = None) -> None:
        event = item.event
        out.activity.append(ActivityEntry(
            map=event.map or "unmapped", key=key, source=event.source, operation=event.operation,
            outcome=outcome, reason=reason, event_id=event.event_id, message_id=item.delivery.origin,
            target_id=target_id, detail=detail, latency_ms=latency_ms))
        out.handled[item.delivery.message_id] = outcome

    async def _fail(self, out: _Outcome, delivery: Delivery, event: ChangeEvent | None,
                    error: BaseException) -> None:
        now = datetime.now(UTC)
        category = category_of(error)
        text = error_text(error)
        key = "" if event is None else await self._linked_label(out, event.map or "", record_label(event, self.maps))
        status = error.status if isinstance(error, ConnectorError) else None
        code = error.code if isinstance(error, ConnectorError) else None
        await self.errors.record(ErrorEntry(
            id=delivery.origin, map=(event.map if event else None) or "unknown", key=key,
            source=event.source if event else "", operation=event.operation if event else "",
            category=category, text=text, attempts=delivery.attempt,
            change=delivery.body.decode("utf-8", errors="replace"),
            session_id=delivery.session_id, first_at=delivery.first_failed_at or now, last_at=now,
            target_status=status, target_code=code or None))
        if event is not None:
            self._record(out, _Item(delivery, event), "failed", f"{category}: {_short(error)}", key,
                         detail=text[:2000])
        out.handled[delivery.message_id] = "failed"
        log.warning("change %s failed (%s) after %d attempt(s); in the error log", delivery.origin, category,
                    delivery.attempt)


def _outage(error: BaseException) -> bool:
    """The target is down, slow or throttling (not the change's fault): retried for the whole horizon."""
    return isinstance(error, TransientError)


def _short(error: BaseException) -> str:
    text = error.message if isinstance(error, ConnectorError) and error.message else str(error)
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _apply_span(out: _Outcome, items: list[_Item]) -> Iterator[None]:
    """The `apply` span of one record's changes in a batch (core.ops.telemetry): child of its first message's trace,
    linked to the others'. Attributes: map, source side, entity, message ids and outcome counts, never values."""
    with telemetry.consumer_span("apply", (item.delivery.properties for item in items)) as span:
        recording = span.is_recording()
        if recording:
            event = items[0].event
            span.set_attributes({"dualwrite.map": event.map or "", "dualwrite.source": event.source,
                                 "dualwrite.entity": event.entity, "messaging.message.id": items[0].delivery.origin,
                                 "messaging.batch.message_count": len(items)})
        yield
        if recording:
            outcomes: dict[str, int] = defaultdict(int)
            for item in items:
                outcomes[out.handled.get(item.delivery.message_id, "none")] += 1
            span.set_attributes({f"dualwrite.{outcome}": n for outcome, n in outcomes.items()})
            if outcomes.get("failed"):
                telemetry.failed(span, f"{outcomes['failed']} change(s) failed")
