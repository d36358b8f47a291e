"""Helpers for the Dataverse simulator tests: a local webhook receiver and webhook registration through
the Web API itself (the documented queries of reference §1.3)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.processes import free_port


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


def message_id(client: httpx.Client, name: str) -> str:
    r = client.get("sdkmessages", params={"$select": "sdkmessageid,name", "$filter": f"name eq '{name}'"})
    r.raise_for_status()
    return r.json()["value"][0]["sdkmessageid"]


def filter_id(client: httpx.Client, message: str, entity: str) -> str:
    mid = message_id(client, message)
    r = client.get("sdkmessagefilters", params={
        "$select": "sdkmessagefilterid",
        "$filter": f"primaryobjecttypecode eq '{entity}' and _sdkmessageid_value eq {mid}",
    })
    r.raise_for_status()
    return r.json()["value"][0]["sdkmessagefilterid"]


def created_id(response: httpx.Response) -> str:
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


@dataclass
class Registration:
    endpoint_id: str
    step_id: str
    image_ids: list[str]

    def remove(self, client: httpx.Client) -> None:
        for image in self.image_ids:
            client.delete(f"sdkmessageprocessingstepimages({image})")
        client.delete(f"sdkmessageprocessingsteps({self.step_id})")
        client.delete(f"serviceendpoints({self.endpoint_id})")


def register_webhook(
    client: httpx.Client, url: str, *, entity: str, message: str, mode: int = 1, stage: int = 40,
    filtering: str | None = None, images: list[dict[str, Any]] | None = None, authtype: int = 4,
    authvalue: str = "test-key",
) -> Registration:
    endpoint = created_id(client.post("serviceendpoints", json={
        "name": f"test {entity} {message}", "url": url, "contract": 8, "authtype": authtype,
        "authvalue": authvalue, "messageformat": 2,
    }))
    step_body: dict[str, Any] = {
        "name": f"test: {message} of {entity}",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
        "sdkmessageid@odata.bind": f"/sdkmessages({message_id(client, message)})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id(client, message, entity)})",
        "stage": stage, "mode": mode, "rank": 1, "supporteddeployment": 0, "asyncautodelete": False,
    }
    if filtering:
        step_body["filteringattributes"] = filtering
    step = created_id(client.post("sdkmessageprocessingsteps", json=step_body))
    image_ids = []
    for image in images or []:
        image_ids.append(created_id(client.post("sdkmessageprocessingstepimages", json={
            "messagepropertyname": "Target", "name": image["entityalias"],
            "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step})", **image,
        })))
    return Registration(endpoint, step, image_ids)
