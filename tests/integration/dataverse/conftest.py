"""A local webhook receiver for the Dataverse simulator tests (registration itself goes through
devstack.dataverse.registration, the Web API way)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.processes import free_port
from tests.fixtures.dataverse import DataverseSim, start_dataverse


@pytest.fixture(scope="package")
def dataverse() -> Iterator[DataverseSim]:
    """This folder's own simulator (overrides the session one here): these tests write many rows and
    register webhooks, and other folders' tests should find the seed data untouched."""
    sim = start_dataverse()
    try:
        yield sim
    finally:
        sim.stop()


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """An HTTP endpoint on a free port. `plan[path]` is a list of (status, delay seconds) answered in
    turn (the last one repeats); every request is recorded in `requests`."""

    port: int
    requests: list[Received] = field(default_factory=list)
    plan: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *responses: tuple[int, float]) -> None:
        with self.lock:
            self.plan[path] = list(responses)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.at(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.at(path)

    def next_response(self, path: str) -> tuple[int, float]:
        with self.lock:
            steps = self.plan.get(path) or [(200, 0.0)]
            return steps.pop(0) if len(steps) > 1 else steps[0]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            split = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.requests.append(Received(split.path, parse_qs(split.query), dict(self.headers.items()), raw))
            status, delay = state.next_response(split.path)
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
