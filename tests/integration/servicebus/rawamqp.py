"""A bare AMQP client on a raw socket, for what the SDK never does: garbage, half-sent transfers,
hand-set message formats. proton's engine writes the frames; the test decides which bytes go out."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from proton import (
    Collector,
    Connection,
    Data,
    Delivery,
    Described,
    Endpoint,
    Message,
    Sender,
    Transport,
    symbol,
    uint,
    ulong,
)

BATCH_FORMAT = 0x80013700


def split_frames(raw: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos < len(raw):
        if raw[pos : pos + 4] == b"AMQP":
            frames.append(raw[pos : pos + 8])
            pos += 8
            continue
        size = struct.unpack_from(">I", raw, pos)[0]
        frames.append(raw[pos : pos + size])
        pos += size
    return frames


def with_message_format(frame: bytes, fmt: int) -> bytes:
    """The same frame; if it is a transfer, with its message-format field replaced."""
    parsed = _performative(frame)
    if parsed is None:
        return frame
    performative, payload = parsed
    fields = list(performative.value) + [None] * 4
    fields = fields[: max(4, len(performative.value))]
    fields[3] = uint(fmt)
    return _frame(frame, fields, payload)


def _performative(frame: bytes) -> tuple[Described, bytes] | None:
    body = frame[frame[4] * 4 :]
    if len(body) < 3 or body[:3] != b"\x00\x53\x14":
        return None
    data = Data()
    consumed = data.decode(body)
    data.rewind()
    data.next()
    return data.get_object(), body[consumed:]


def _frame(channel_from: bytes, fields: list, payload: bytes) -> bytes:
    out = Data()
    out.put_object(Described(ulong(0x14), fields))
    body = out.encode() + payload
    return struct.pack(">IBB", 8 + len(body), 2, 0) + channel_from[6:8] + body


def split_transfer(frame: bytes, chunk: int) -> list[bytes]:
    """One single-frame transfer as several frames (more=true on all but the last)."""
    parsed = _performative(frame)
    assert parsed is not None, "not a transfer frame"
    performative, payload = parsed
    first = list(performative.value) + [None] * 6
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
    frames = []
    for i, piece in enumerate(pieces):
        fields = first[:5] if i == 0 else [first[0], None, None, None, None]
        frames.append(_frame(frame, [*fields, i < len(pieces) - 1], piece))
    return frames


class RawClient:
    def __init__(self, port: int, address: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.transport = Transport()
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.connection = Connection()
        self.connection.collect(Collector())
        self.transport.bind(self.connection)
        self.connection.open()
        session = self.connection.session()
        session.open()
        self.sender = session.sender("raw-sender")
        self.sender.target.address = address
        self.sender.open()

    def output(self) -> bytes:
        out = b""
        while (pending := self.transport.pending()) > 0:
            out += self.transport.peek(pending)
            self.transport.pop(pending)
        return out

    def exchange(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError("the emulator did not answer in time")
            self.sock.sendall(self.output())
            self.sock.settimeout(0.2)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionError("the emulator closed the connection")
            self.transport.push(chunk)

    def attach(self) -> None:
        self.exchange(lambda: self.sender.credit > 0)

    def lock_session(self, address: str, session_id: str) -> None:
        """Open a session receiver (what the SDK does for `session_id=...`) and wait for the attach."""
        session = self.connection.session()
        session.open()
        receiver = session.receiver("raw-session-receiver")
        receiver.source.address = address
        receiver.source.filter.put_object({symbol("com.microsoft:session-filter"): session_id})
        receiver.target.address = "raw-client"
        receiver.open()
        receiver.flow(10)
        self.exchange(lambda: bool(receiver.state & Endpoint.REMOTE_ACTIVE))
        if receiver.remote_source.address is None:
            raise AssertionError("the session receiver was refused")

    def transfer(self, payload: bytes, tag: bytes = b"t1") -> tuple[Delivery, bytes]:
        """Queue one delivery; return it and the bytes proton would send (not sent yet)."""
        delivery = self.sender.delivery(tag)
        self.sender.stream(payload)
        self.sender.advance()
        return delivery, self.output()

    def sender_to(self, address: str) -> Sender:
        """Another sending link on this connection, attached and with credit."""
        session = self.connection.session()
        session.open()
        link = session.sender(f"raw-sender-{address}")
        link.target.address = address
        link.open()
        self.exchange(lambda: link.credit > 0)
        return link

    def request(self, node: str, request: Message) -> Message:
        """Send a request to a `$cbs` or `$management` node and wait for the answer on a reply link."""
        session = self.connection.session()
        session.open()
        replies = session.receiver(f"raw-replies-{node}")
        replies.source.address = node
        replies.target.address = node
        replies.open()
        replies.flow(1)
        requests = session.sender(f"raw-requests-{node}")
        requests.target.address = node
        requests.source.address = node
        requests.open()
        self.exchange(lambda: requests.credit > 0)
        request.reply_to = node
        request.id = request.id or "raw-request-1"
        delivery = requests.delivery(b"req")
        requests.stream(request.encode())
        requests.advance()
        self.exchange(lambda: replies.current is not None and not replies.current.partial)
        answer = Message()
        answer.decode(replies.recv(replies.current.pending))
        delivery.settle()
        return answer

    def send_raw(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def close(self) -> None:
        self.sock.close()
