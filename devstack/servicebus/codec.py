"""AMQP message sections in and out of the emulator.

A stored message keeps its bare message (properties, application-properties, body, footer) as the
bytes the sender encoded: AMQP forbids a broker to change the bare message, and re-encoding would lose
types. What the broker adds (header with delivery-count, message annotations with sequence number,
lock token...) is encoded fresh for each delivery. proton's `Message.encode()` would drop a header
whose delivery-count is 0, so sections are encoded one by one with `Data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proton import Data, Described, symbol, timestamp, ubyte, uint, ulong

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75

SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
PARTITION_KEY = symbol("x-opt-partition-key")


class MalformedMessage(ValueError):
    """The bytes of a transfer are not an AMQP message."""


@dataclass(slots=True)
class WireMessage:
    """One message as received from a sender, split into what the broker reads and what it keeps."""

    message_id: str | None = None
    session_id: str | None = None
    ttl_ms: int | None = None
    durable: bool | None = None
    priority: int | None = None
    annotations: dict[Any, Any] = field(default_factory=dict)
    properties: bytes = b""
    application_properties: bytes = b""
    rest: bytes = b""

    @property
    def scheduled_enqueue_ms(self) -> int | None:
        value = self.annotations.get(SCHEDULED_ENQUEUE_TIME)
        return int(value) if value else None

    @property
    def size(self) -> int:
        return len(self.properties) + len(self.application_properties) + len(self.rest)


def _sections(buf: bytes):
    """Yield (descriptor code, start, end) of each top-level described section."""
    view = memoryview(buf)
    data = Data()
    pos = 0
    while pos < len(buf):
        data.clear()
        try:
            consumed = data.decode(view[pos:])
        except Exception as exc:
            raise MalformedMessage(f"undecodable AMQP section at byte {pos}: {exc}") from exc
        if consumed <= 0:
            raise MalformedMessage(f"empty AMQP section at byte {pos}")
        data.rewind()
        if data.next() != Data.DESCRIBED:
            raise MalformedMessage(f"AMQP section at byte {pos} is not a described type")
        data.enter()
        data.next()
        code = int(data.get_ulong()) if data.type() == Data.ULONG else -1
        data.exit()
        yield code, pos, pos + consumed, data
        pos += consumed


def _value(data: Data) -> Any:
    data.rewind()
    data.next()
    return data.get_object().value


def decode_message(buf: bytes) -> WireMessage:
    msg = WireMessage()
    body_start: int | None = None
    for code, start, end, data in _sections(buf):
        if body_start is not None:
            continue  # body and footer are kept verbatim; decoding them above proves they are well formed
        if code == HEADER:
            fields = list(_value(data) or [])
            fields += [None] * (5 - len(fields))
            msg.durable, msg.priority = fields[0], fields[1]
            msg.ttl_ms = int(fields[2]) if fields[2] is not None else None
        elif code == DELIVERY_ANNOTATIONS:
            continue
        elif code == MESSAGE_ANNOTATIONS:
            msg.annotations = dict(_value(data) or {})
        elif code == PROPERTIES:
            fields = list(_value(data) or [])
            fields += [None] * (13 - len(fields))
            msg.properties = bytes(buf[start:end])
            msg.message_id = None if fields[0] is None else _text(fields[0])
            msg.session_id = None if fields[10] is None else _text(fields[10])
        elif code == APPLICATION_PROPERTIES:
            msg.application_properties = bytes(buf[start:end])
        else:  # body sections and footer
            body_start = start
    if body_start is not None:
        msg.rest = bytes(buf[body_start:])
    return msg


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | memoryview) else str(value)


def split_batch(buf: bytes) -> list[WireMessage]:
    """A batch transfer (message-format 0x80013700): one message per data section of the envelope."""
    inner: list[WireMessage] = []
    for code, _start, _end, data in _sections(buf):
        if code == DATA:
            # get_object() hands out a view into proton's buffer: copy it before the next decode.
            inner.append(decode_message(bytes(_value(data))))
    return inner


def _encode(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return data.encode()


def encode_header(msg: WireMessage, delivery_count: int) -> bytes:
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(HEADER)
    data.put_list()
    data.enter()
    _put_optional(data, msg.durable, data.put_bool)
    _put_optional(data, msg.priority, lambda v: data.put_ubyte(ubyte(v)))
    _put_optional(data, msg.ttl_ms, lambda v: data.put_uint(uint(v)))
    data.put_null()  # first-acquirer
    data.put_uint(uint(delivery_count))
    data.exit()
    data.exit()
    return data.encode()


def _put_optional(data: Data, value: Any, put: Any) -> None:
    if value is None:
        data.put_null()
    else:
        put(value)


def encode_delivery(msg: WireMessage, delivery_count: int, annotations: dict[str, Any]) -> bytes:
    """The full message a receiver gets: header, merged annotations, then the sender's bare message."""
    merged = dict(msg.annotations)
    for key, value in annotations.items():
        merged[symbol(key)] = value
    return (
        encode_header(msg, delivery_count)
        + _encode(Described(ulong(MESSAGE_ANNOTATIONS), merged))
        + msg.properties
        + msg.application_properties
        + msg.rest
    )


def with_application_properties(msg: WireMessage, extra: dict[str, Any]) -> None:
    """Add or replace application properties (the dead-letter reason lives there)."""
    current: dict[Any, Any] = {}
    if msg.application_properties:
        for _code, _s, _e, data in _sections(msg.application_properties):
            current = dict(_value(data) or {})
    current.update(extra)
    msg.application_properties = _encode(Described(ulong(APPLICATION_PROPERTIES), current))


def ms(epoch_seconds: float) -> timestamp:
    return timestamp(int(epoch_seconds * 1000))
