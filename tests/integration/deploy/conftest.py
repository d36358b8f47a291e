"""Own simulators for the deployment tests (they register webhook steps and event activations, which
other folders' tests must not inherit) and a local HTTP receiver standing in for the Function App."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.processes import free_port
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.fno import FnoSimulator, start_fno


@dataclass(frozen=True)
class Call:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class AppStandIn:
    """Answers 202 to every POST (what the ingest functions answer) and records the calls."""

    port: int
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def at(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.at(path)) < count:
            time.sleep(0.05)
        return self.at(path)


@pytest.fixture(scope="package")
def app_stand_in() -> Iterator[AppStandIn]:
    stand_in = AppStandIn(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            with stand_in.lock:
                stand_in.calls.append(Call(parts.path, parse_qs(parts.query),
                                           {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", stand_in.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="package")
def dataverse() -> Iterator[DataverseSim]:
    sim = start_dataverse()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="package")
def fno() -> Iterator[FnoSimulator]:
    sim = start_fno("fno-deploy")
    try:
        yield sim
    finally:
        sim.process.stop()
