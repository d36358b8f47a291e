"""AMQP 1.0 over plain TCP: asyncio owns the sockets, proton's engine (Connection/Transport/Collector)
does the protocol, one event loop thread does everything.

Not using proton's own reactor lets every received chunk pass through the FrameScanner (message-format
of each transfer) before proton sees it, and keeps timers (lock expiry, held session attaches) on the
same loop. Every event handler is guarded: an exception closes that connection with
`amqp:internal-error` and is logged; it never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from proton import Collector, Condition, Connection, Endpoint, Event, Link, Transport

from devstack.servicebus.broker import Broker
from devstack.servicebus.frames import FrameScanner
from devstack.servicebus.topology import Topology

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.1
CONTAINER_ID = "devstack-servicebus"


class AmqpConnection(asyncio.Protocol):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.scanner = FrameScanner()
        self.reply_links: dict[str, Link] = {}
        self.peer = "?"
        self._socket: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._gone = False
        self._received = 0
        self.connection = Connection()
        self.collector = Collector()
        self.connection.collect(self.collector)
        self.transport = Transport(Transport.SERVER)
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.transport.bind(self.connection)

    # --- socket side --------------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self._socket = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        log.debug("connection from %s", self.peer)
        self._process()

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        self.scanner.feed(data)
        view = memoryview(data)
        while view:
            capacity = self.transport.capacity()
            if capacity < 0:  # proton stopped reading (error or close): drop the rest
                break
            if capacity == 0:
                self._process()
                if self.transport.capacity() == 0:
                    break
                continue
            chunk = view[:capacity]
            try:
                self.transport.push(chunk.tobytes())
            except Exception as exc:  # malformed input: proton has set an error condition to send
                log.info("connection %s: bad input: %s", self.peer, exc)
                break
            view = view[len(chunk) :]
        self._process()

    def eof_received(self) -> bool | None:
        self.transport.close_tail()
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tick_handle:
            self._tick_handle.cancel()
        if not self._gone:
            with contextlib.suppress(Exception):
                self.transport.close_tail()
                self.transport.close_head()
            self._gone = True
            try:
                self.broker.on_connection_gone(self)
            except Exception:
                log.exception("cleaning up connection %s failed", self.peer)
        log.debug("connection %s closed (%s)", self.peer, exc)

    # --- proton side --------------------------------------------------------------------------------
    def schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._gone:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._process)

    def _process(self) -> None:
        self._flush_scheduled = False
        if self._gone or self._socket is None:
            return
        try:
            for _ in range(1000):  # events beget output beget events; bounded for safety
                handled = self._dispatch()
                wrote = self._write()
                if not handled and not wrote:
                    break
            self._schedule_tick()
            if self.transport.closed or (self.transport.capacity() < 0 and self.transport.pending() < 0):
                self._socket.close()
        except Exception:
            log.exception("connection %s: transport failure; closing", self.peer)
            self._socket.close()

    def _dispatch(self) -> bool:
        handled = False
        while (event := self.collector.peek()) is not None:
            handled = True
            try:
                self._handle(event)
            except Exception:
                log.exception("connection %s: error handling %s; closing the connection", self.peer, event.type)
                self._fail("amqp:internal-error", "The emulator failed to handle a frame; see its log.")
            finally:
                self.collector.pop()
        return handled

    def _handle(self, event: Event) -> None:
        kind = event.type
        if kind == Event.CONNECTION_REMOTE_OPEN:
            self.connection.container = CONTAINER_ID
            self.connection.open()
        elif kind == Event.SESSION_REMOTE_OPEN:
            event.session.open()
        elif kind == Event.LINK_REMOTE_OPEN:
            self.broker.on_link_open(self, event.link)
        elif kind == Event.LINK_FLOW:
            self.broker.on_flow(event.link)
        elif kind == Event.DELIVERY:
            self.broker.on_delivery(self, event.delivery)
        elif kind in (Event.LINK_REMOTE_CLOSE, Event.LINK_REMOTE_DETACH):
            self.broker.on_link_close(self, event.link)
            if not event.link.state & Endpoint.LOCAL_CLOSED:
                event.link.close()
        elif kind == Event.SESSION_REMOTE_CLOSE:
            for link in self.all_links():
                if link.session == event.session:
                    self.broker.on_link_close(self, link)
            if not event.session.state & Endpoint.LOCAL_CLOSED:
                event.session.close()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            self.broker.on_connection_gone(self)
            if not self.connection.state & Endpoint.LOCAL_CLOSED:
                self.connection.close()
        elif kind == Event.TRANSPORT_ERROR:
            cond = self.transport.condition
            # Not worth a log line: a port probe (connect, close without a byte), and the SDK detaching its
            # links after it ended their session, which proton reports as "no such channel".
            harmless = not self._received or (cond is not None and "no such channel" in (cond.description or ""))
            level = logging.DEBUG if harmless else logging.INFO
            log.log(level, "connection %s: transport error %s", self.peer, cond and f"{cond.name}: {cond.description}")

    def _fail(self, condition: str, description: str) -> None:
        with contextlib.suppress(Exception):
            self.broker.on_connection_gone(self)
        with contextlib.suppress(Exception):
            self.connection.condition = Condition(condition, description)
            self.connection.close()

    def _write(self) -> bool:
        wrote = False
        while (pending := self.transport.pending()) > 0:
            out = self.transport.peek(pending)
            self.transport.pop(pending)
            if out and self._socket is not None:
                self._socket.write(out)
                wrote = True
        return wrote

    def _schedule_tick(self) -> None:
        if self._tick_handle:
            self._tick_handle.cancel()
            self._tick_handle = None
        now = time.monotonic()
        deadline = self.transport.tick(now)
        if deadline:
            loop = asyncio.get_running_loop()
            self._tick_handle = loop.call_later(max(deadline - now, 0.0), self._process)

    def all_links(self) -> Iterator[Link]:
        link = self.connection.link_head(0)
        while link is not None:
            yield link
            link = link.next(0)


async def serve(topology: Topology, host: str, port: int) -> None:
    """Run the emulator until cancelled."""
    loop = asyncio.get_running_loop()
    broker = Broker(topology)
    broker.schedule = loop.call_soon
    server = await loop.create_server(lambda: AmqpConnection(broker), host, port, reuse_address=True)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                broker.sweep()
            except Exception:
                log.exception("periodic sweep failed")

    sweep_task = asyncio.create_task(sweeper())
    log.info(
        "Service Bus emulator listening on amqp://%s:%d (namespace %s, queues: %s)",
        host,
        port,
        topology.namespace,
        ", ".join(topology.queue_names) or "none",
    )
    for topic in topology.topics:
        log.warning("topic %r (%d subscriptions) is parsed but not served yet", topic.name, len(topic.subscriptions))
    try:
        async with server:
            await server.serve_forever()
    finally:
        sweep_task.cancel()
