"""A fault-injecting HTTP/1.1 reverse proxy in a thread of the test (or bench) process.

Put it in front of a simulator (the engine's DATAVERSE_URL / FNO_URL point at it) or in front of the host
(APP_URL: the simulators deliver webhooks and events through it). Per request it draws one fate:

- `throttle` (share `p429`): answers 429 with `Retry-After` itself, the target never sees the request;
- `unavailable` (share `p503`): answers 503 with `Retry-After`;
- `drop_before` (half of `pdrop`): reads part of the request, then closes the connection (nothing reached the target);
- `drop_after` (the other half): forwards the whole request, the target answers (and may have committed a write),
  then closes the connection without answering: where a client that sends again writes twice;
- `forward`: passes it on.

`hold` (a set of path prefixes) answers 200 to POSTs on those paths without forwarding and keeps them in `held`
(what Dataverse and F&O delivered, to be replayed by the test). Every request that was dropped after forwarding is
kept in `dropped_after` (method, path, body) so a test can tell which records may rightly be written once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.processes import free_port

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "content-length", "host"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:port
    p429: float = 0.0
    p503: float = 0.0
    pdrop: float = 0.0
    retry_after: str = "1"
    seed: int = 18
    port: int = field(default_factory=free_port)
    hold: set[str] = field(default_factory=set)
    fates: Counter[str] = field(default_factory=Counter)
    held: list[Seen] = field(default_factory=list)
    dropped_after: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._forced = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def faults(self, p429: float = 0.0, p503: float = 0.0, pdrop: float = 0.0, *, reset: bool = True,
               drop_next_writes: int = 0) -> None:
        """Set the fault rates; `reset` starts the counts and the dropped list afresh; the next `drop_next_writes`
        requests that are not GETs are dropped after the target answered (so a test meets that case for sure)."""
        with self._lock:
            self.p429, self.p503, self.pdrop = p429, p503, pdrop
            self._forced = drop_next_writes
            if reset:
                self.fates.clear()
                self.dropped_after.clear()

    def figures(self) -> dict[str, int]:
        with self._lock:
            return dict(self.fates)

    def _fate(self, method: str, path: str) -> str:
        with self._lock:
            if method == "POST" and any(path.startswith(prefix) for prefix in self.hold):
                fate = "held"
            elif self._forced and method != "GET":
                self._forced -= 1
                fate = "drop_after"
            else:
                draw = self._rng.random()
                if draw < self.p429:
                    fate = "throttle"
                elif draw < self.p429 + self.p503:
                    fate = "unavailable"
                elif draw < self.p429 + self.p503 + self.pdrop / 2:
                    fate = "drop_before"
                elif draw < self.p429 + self.p503 + self.pdrop:
                    fate = "drop_after"
                else:
                    fate = "forward"
            self.fates[fate] += 1
            return fate

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=120,
                                         limits=httpx.Limits(max_connections=100, max_keepalive_connections=50))
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
            await self._client.aclose()

    # -- one connection ----------------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip()] = value.strip()
                lower = {k.lower(): v for k, v in headers.items()}
                fate = self._fate(method, target)
                if fate == "drop_before":
                    length = int(lower.get("content-length", "0") or 0)
                    if length > 1:
                        await reader.readexactly(length // 2)
                    return  # closes mid-request
                body = await self._body(reader, lower)
                if fate == "held":
                    with self._lock:
                        self.held.append(Seen(method, target, lower, body))
                    await self._answer(writer, 200, {}, b"")
                elif fate in ("throttle", "unavailable"):
                    status = 429 if fate == "throttle" else 503
                    text = b'{"error":{"code":"0x80072321","message":"chaos proxy: try again later"}}'
                    await self._answer(writer, status, {"Retry-After": self.retry_after,
                                                        "Content-Type": "application/json"}, text)
                else:
                    send = {k: v for k, v in headers.items() if k.lower() not in _HOP}
                    try:
                        response = await self._client.request(method, target, headers=send, content=body)
                        content = await response.aread()
                    except httpx.HTTPError:
                        return  # the target is gone: so is the connection
                    if fate == "drop_after":
                        with self._lock:
                            self.dropped_after.append(Seen(method, target, lower, body))
                        return  # the target answered (and may have committed); the caller never hears of it
                    out = {k: v for k, v in response.headers.items()
                           if k.lower() not in _HOP and k.lower() != "content-encoding"}
                    await self._answer(writer, response.status_code, out, content)
                if lower.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length", "0") or 0)
        return await reader.readexactly(length) if length else b""

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, headers: dict[str, Any], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


def _reason(status: int) -> str:
    return {200: "OK", 201: "Created", 204: "No Content", 429: "Too Many Requests",
            503: "Service Unavailable"}.get(status, "Status")
