"""`$management` request/response operations, the way the SDK calls them (see the reference's table).

Each request carries `operation` in its application properties and a map body; the response carries
`statusCode`, `statusDescription` and, on failure, `errorCondition` (the SDK maps the condition to its
exception type). 204 means "nothing there" (an empty peek).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proton import Array, Data, Link, Message, int32, symbol

from devstack.servicebus.codec import MalformedMessage, decode_message, encode_delivery, ms
from devstack.servicebus.entities import Outcome, Queue, SubQueue
from devstack.servicebus.errors import BadRequest, BrokerError, InvalidOperation

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from devstack.servicebus.broker import Broker

Result = tuple[int, dict[str, Any]]

DISPOSITIONS: dict[str, Outcome] = {
    "completed": "complete",
    "abandoned": "abandon",
    "suspended": "dead_letter",
    "defered": "defer",  # sic: the SDK's spelling
    "deferred": "defer",
}


class Request:
    def __init__(self, broker: Broker, entity: SubQueue, link: Link, body: dict[str, Any]) -> None:
        self.broker = broker
        self.entity = entity
        self.link = link
        self.body = body

    def field(self, name: str) -> Any:
        if name not in self.body:
            raise BadRequest(f"The request body has no '{name}' field.")
        return self.body[name]

    def ints(self, name: str) -> list[int]:
        try:
            return [int(v) for v in _elements(self.field(name))]
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"'{name}' must be an array of sequence numbers.") from exc

    def tokens(self) -> list[uuid.UUID]:
        try:
            return [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in _elements(self.field("lock-tokens"))]
        except (TypeError, ValueError) as exc:
            raise BadRequest("'lock-tokens' must be an array of uuids.") from exc

    def session_id(self, required: bool = False) -> str | None:
        value = self.body.get("session-id")
        if value is None and required:
            raise BadRequest("The request body has no 'session-id' field.")
        return None if value is None else str(value)

    def queue(self) -> Queue:
        if not isinstance(self.entity, Queue):
            raise InvalidOperation(f"This operation is not supported on '{self.entity.path}'.")
        return self.entity


def _elements(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    raise TypeError(f"expected an array, got {type(value).__name__}")


def renew_lock(req: Request) -> Result:
    expirations = [ms(req.entity.renew(token)) for token in req.tokens()]
    return 200, {"expirations": Array(None, Data.TIMESTAMP, *expirations)}


def peek(req: Request) -> Result:
    start = int(req.field("from-sequence-number"))
    count = int(req.field("message-count"))
    found = req.entity.peek(start, count, req.session_id())
    if not found:
        return 204, {}
    return 200, {"messages": [{"message": _encoded(msg, None)} for msg in found]}


def update_disposition(req: Request) -> Result:
    status = str(req.field("disposition-status")).lower()
    outcome = DISPOSITIONS.get(status)
    if outcome is None:
        raise BadRequest(f"'disposition-status' {status!r} is not one of {sorted(DISPOSITIONS)}.")
    reason = req.body.get("deadletter-reason")
    description = req.body.get("deadletter-description")
    for token in req.tokens():
        req.entity.settle(
            token, outcome, None if reason is None else str(reason), None if description is None else str(description)
        )
    return 200, {}


def renew_session_lock(req: Request) -> Result:
    return 200, {"expiration": ms(req.queue().renew_session(req.session_id(required=True) or ""))}


def get_session_state(req: Request) -> Result:
    state = req.queue().get_session_state(req.session_id(required=True) or "")
    return 200, {"session-state": None if state is None else bytes(state)}


def set_session_state(req: Request) -> Result:
    state = req.body.get("session-state")
    if state is not None and not isinstance(state, bytes | bytearray | memoryview):
        raise BadRequest("'session-state' must be binary or null.")
    req.queue().set_session_state(req.session_id(required=True) or "", None if state is None else bytes(state))
    return 200, {}


def schedule_message(req: Request) -> Result:
    queue = req.queue()
    entries = req.field("messages")
    if not isinstance(entries, list):
        raise BadRequest("'messages' must be a list.")
    wires = []
    for i, entry in enumerate(entries):
        raw = entry.get("message") if isinstance(entry, dict) else None
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise BadRequest(f"messages[{i}].message must be the binary encoded message.")
        try:
            wire = decode_message(bytes(raw))
        except MalformedMessage as exc:
            raise BadRequest(f"messages[{i}].message: {exc}") from exc
        if wire.scheduled_enqueue_ms is None:
            raise BadRequest(f"messages[{i}].message has no x-opt-scheduled-enqueue-time annotation.")
        queue.check_sendable(wire)
        wires.append(wire)
    seqs = []
    for wire in wires:
        stored = queue.enqueue(wire, scheduled_at=(wire.scheduled_enqueue_ms or 0) / 1000)
        seqs.append(stored.seq if stored is not None else 0)
    return 200, {"sequence-numbers": Array(None, Data.LONG, *seqs)}


def cancel_scheduled_message(req: Request) -> Result:
    req.queue().cancel_scheduled(req.ints("sequence-numbers"))
    return 200, {}


def receive_by_sequence_number(req: Request) -> Result:
    delete = int(req.body.get("receiver-settle-mode", 1)) == 0
    found = req.entity.receive_deferred(req.ints("sequence-numbers"), req.link, delete, req.session_id())
    messages = []
    for msg, token in found:
        entry: dict[str, Any] = {"message": _encoded(msg, token)}
        if token is not None:
            entry["lock-token"] = token
        messages.append(entry)
    return 200, {"messages": messages}


def _encoded(msg: Any, token: uuid.UUID | None) -> bytes:
    from devstack.servicebus.broker import message_annotations  # circular at import time only

    return encode_delivery(msg.wire, msg.delivery_count, message_annotations(msg, token))


OPERATIONS: dict[str, Callable[[Request], Result]] = {
    "com.microsoft:renew-lock": renew_lock,
    "com.microsoft:peek-message": peek,
    "com.microsoft:update-disposition": update_disposition,
    "com.microsoft:renew-session-lock": renew_session_lock,
    "com.microsoft:get-session-state": get_session_state,
    "com.microsoft:set-session-state": set_session_state,
    "com.microsoft:schedule-message": schedule_message,
    "com.microsoft:cancel-scheduled-message": cancel_scheduled_message,
    "com.microsoft:receive-by-sequence-number": receive_by_sequence_number,
}


def handle(broker: Broker, entity: SubQueue, link: Link, request: Message) -> Message:
    props = {str(k): v for k, v in (request.properties or {}).items()}
    operation = str(props.get("operation", ""))
    body = request.body if isinstance(request.body, dict) else {}
    # the body's fields, not their values: scheduled messages and session state carry the changes' data
    log.debug("%s on %s: fields %s", operation, entity.path, sorted(map(str, body)))
    try:
        handler = OPERATIONS.get(operation)
        if handler is None:
            raise BadRequest(f"Operation {operation!r} is not supported by this emulator.")
        status, result = handler(Request(broker, entity, link, {str(k): v for k, v in body.items()}))
    except BrokerError as exc:
        return Message(
            body={},
            properties={
                "statusCode": int32(exc.status),
                "statusDescription": str(exc),
                "errorCondition": symbol(exc.condition),
            },
        )
    except (TypeError, ValueError, AttributeError) as exc:
        return Message(
            body={},
            properties={
                "statusCode": int32(400),
                "statusDescription": f"Malformed {operation} request: {exc}",
                "errorCondition": symbol(BadRequest.condition),
            },
        )
    return Message(body=result, properties={"statusCode": int32(status), "statusDescription": "OK"})
