"""Reads each incoming transfer's message-format from the raw AMQP byte stream.

proton (C and Python, 0.40) parses the transfer performative but drops its message-format field, and a
Service Bus batch (format 0x80013700) differs from a single message only in that field. The emulator
owns the socket, so it runs every received chunk through this scanner before pushing it into proton's
transport: the scanner splits the stream into frames, decodes only the performatives of attach and
transfer frames (proton's own codec), and queues the message-format of each new delivery per link
name. The broker takes the next queued format the first time proton reports a delivery on that link;
deliveries on one link arrive in order, so the two streams line up exactly.
"""

from __future__ import annotations

import logging
import struct
from collections import deque

from proton import Data

log = logging.getLogger(__name__)

BATCH_FORMAT = 0x80013700

_ATTACH = 0x12
_TRANSFER = 0x14
_AMQP_FRAME = 0
_HEADER_LEN = 8
_MAX_FRAME = 64 * 1024 * 1024


class FrameScanner:
    """Follows one connection's inbound bytes; never raises (proton reports malformed input itself)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._broken = False
        self._names: dict[tuple[int, int], str] = {}  # (channel, handle) -> link name
        self._continuing: set[tuple[int, int]] = set()  # links whose last transfer had more=true
        self._formats: dict[str, deque[int]] = {}

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        self._buffer += chunk
        try:
            self._scan()
        except Exception:  # malformed input: proton will reject it and close the connection
            log.debug("frame scanner gave up on malformed input", exc_info=True)
            self._broken = True
            self._buffer.clear()

    def next_format(self, link_name: str) -> int:
        """The message-format of the next new delivery on this (receiving) link."""
        queue = self._formats.get(link_name)
        return queue.popleft() if queue else 0

    def forget(self, link_name: str) -> None:
        self._formats.pop(link_name, None)

    def _scan(self) -> None:
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= _HEADER_LEN:
            if buf[pos : pos + 4] == b"AMQP":  # protocol header (SASL or AMQP layer)
                pos += _HEADER_LEN
                continue
            size, doff, frame_type, channel = struct.unpack_from(">IBBH", buf, pos)
            if size < _HEADER_LEN or size > _MAX_FRAME or doff < 2:
                raise ValueError(f"bad frame header size={size} doff={doff}")
            if len(buf) - pos < size:
                break
            body_start = pos + doff * 4
            if frame_type == _AMQP_FRAME and body_start < pos + size:
                self._performative(channel, bytes(buf[body_start : pos + size]))
            pos += size
        del buf[:pos]

    def _performative(self, channel: int, body: bytes) -> None:
        # Cheap check of the descriptor before decoding: 0x00 0x53 <code> (smallulong) is what clients send.
        if len(body) < 3 or body[0] != 0 or body[1] != 0x53 or body[2] not in (_ATTACH, _TRANSFER):
            if body[:1] == b"\x00" and body[1:2] == b"\x80":  # ulong descriptor: decode properly
                code = struct.unpack_from(">Q", body, 2)[0]
                if code not in (_ATTACH, _TRANSFER):
                    return
            else:
                return
        data = Data()
        data.decode(body)
        described = data.get_object()
        code = int(described.descriptor)
        fields = list(described.value)
        if code == _ATTACH:
            name, handle, role = fields[0], fields[1], fields[2]
            if role is False:  # the peer sends on this link: it is our receiver
                self._names[(channel, int(handle))] = str(name)
                self._continuing.discard((channel, int(handle)))
        elif code == _TRANSFER:
            key = (channel, int(fields[0]))
            more = bool(fields[5]) if len(fields) > 5 and fields[5] is not None else False
            aborted = bool(fields[9]) if len(fields) > 9 and fields[9] is not None else False
            if key not in self._continuing:
                name = self._names.get(key)
                if name is not None:
                    fmt = fields[3] if len(fields) > 3 and fields[3] is not None else 0
                    self._formats.setdefault(name, deque()).append(int(fmt))
            if more and not aborted:
                self._continuing.add(key)
            else:
                self._continuing.discard(key)
