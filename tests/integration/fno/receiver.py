"""A local HTTPS endpoint that records what the simulator POSTs to it (the "HTTPS endpoint" of F&O).

It runs in a thread of the test process, with TLS when given a certificate (the fixture's
self-signed one, which the simulator trusts through `--ca-file`); `fail_next(n)` makes the next n
requests answer 500 so retry and errors-list behaviour can be observed.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.processes import free_port
from tests.fixtures.fno import TlsFiles


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.received: list[Received] = []
        self.failures = 0  # answered with 500
        self._fail_next = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    failing = receiver._fail_next > 0
                    if failing:
                        receiver._fail_next -= 1
                        receiver.failures += 1
                    else:
                        receiver.received.append(
                            Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                        )
                self.send_response(500 if failing else 202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert_path, tls.key_path)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/events"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail_next = count

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self.failures = 0

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> list[Received]:
        """Received requests matching predicate(json) once at least one arrived (or raise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                hits = [r for r in self.received if predicate(r.json())]
            if hits:
                return hits
            time.sleep(0.05)
        raise AssertionError(f"nothing matching arrived in {timeout}s; got {[r.json() for r in self.received]}")
