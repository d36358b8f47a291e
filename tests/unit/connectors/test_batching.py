"""Requests made at about the same time go out as one `$batch` (core.connectors.batching), through
httpx.MockTransport: each caller still gets its own answer, classified and retried as if sent alone."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import httpx

from core.connectors import LocalTokens, NotFound, ValidationFailed
from core.connectors.http import ODataHttp
from devstack.fno.batch import Part, parse

BASE = "https://env.operations.dynamics.com/data/"
Answer = Callable[[Part], tuple[int, dict[str, str], bytes]]


class BatchTarget:
    """A target that answers `$batch` part by part (a failing changeset answers with that part only)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.batches: list[list[Part | list[Part]]] = []
        self.whole: list[int] = []  # statuses to answer whole $batch requests with, first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not request.url.path.endswith("/$batch"):
            status, headers, body = self.answer(Part(request.method, str(request.url), {}, request.content, None))
            return httpx.Response(status, headers=headers, content=body)
        if self.whole:
            return httpx.Response(self.whole.pop(0), headers={"Retry-After": "0"}, json={"error": {"message": "busy"}})
        items = parse(request.content, request.headers["Content-Type"])
        self.batches.append(items)
        chunks = []
        for item in items:
            if isinstance(item, Part):
                chunks.append(_part(*self.answer(item)))
                continue
            replies = [self.answer(part) for part in item]
            failed = next((reply for reply in replies if reply[0] >= 400), None)
            if failed is not None:
                chunks.append(_part(*failed))
            else:
                inner = "".join(f"--cs\r\n{_part(*reply)}\r\n" for reply in replies) + "--cs--"
                chunks.append(f'Content-Type: multipart/mixed; boundary="cs"\r\n\r\n{inner}')
        body = "".join(f"--b\r\n{chunk}\r\n" for chunk in chunks) + "--b--\r\n"
        return httpx.Response(200, headers={"Content-Type": 'multipart/mixed; boundary="b"'}, content=body.encode())


def _part(status: int, headers: dict[str, str], body: bytes) -> str:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"HTTP/1.1 {status} X\r\n{head}\r\n{body.decode()}")


def _key(part: Part) -> str:
    match = re.search(r"CustomerAccount='([^']+)'", part.url)
    return match.group(1) if match else ""


def http(target: BatchTarget, **options: object) -> ODataHttp:
    client = ODataHttp(BASE, LocalTokens(), transport=httpx.MockTransport(target), backoff_base=0.001)
    client.batch_concurrent(**options)  # type: ignore[arg-type]
    return client


def address(account: str) -> str:
    return f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')"


async def test_requests_made_together_share_one_batch_and_get_their_own_answers() -> None:
    def answer(part: Part) -> tuple[int, dict[str, str], bytes]:
        if part.method == "GET":
            found = _key(part) != "GONE"
            return (200, {"Content-Type": "application/json"}, json.dumps({"CustomerAccount": _key(part)}).encode()) \
                if found else (404, {}, b'{"error":{"message":"not found"}}')
        return 204, {}, b""

    target = BatchTarget(answer)
    client = http(target)
    results = await asyncio.gather(*(client.request("GET", address(f"C-{n}")) for n in range(30)),
                                   client.request("PATCH", address("C-1"), body={"OrganizationName": "X"}),
                                   client.request("GET", address("GONE")), return_exceptions=True)
    assert [len(batch) for batch in target.batches] == [32] and len(target.requests) == 1
    assert [r.json()["CustomerAccount"] for r in results[:30]] == [f"C-{n}" for n in range(30)]  # type: ignore[union-attr]
    assert isinstance(results[30], httpx.Response) and results[30].status_code == 204
    assert isinstance(results[31], NotFound)  # classified like a request sent alone
    [patch] = [p for p in target.batches[0] if isinstance(p, Part) and p.method == "PATCH"]
    assert json.loads(patch.body) == {"OrganizationName": "X"}


async def test_a_lone_request_is_sent_as_it_is() -> None:
    target = BatchTarget(lambda part: (204, {}, b""))
    await http(target).request("PATCH", address("C-1"), body={"OrganizationName": "X"})
    assert [r.url.path for r in target.requests] == ["/data/CustomersV3(dataAreaId='usmf',CustomerAccount='C-1')"]


async def test_each_write_in_its_own_changeset_so_a_refused_row_fails_alone() -> None:
    def answer(part: Part) -> tuple[int, dict[str, str], bytes]:
        if _key(part) == "BAD":
            return 400, {"Content-Type": "application/json"}, b'{"error":{"message":"Credit limit is not valid"}}'
        return 204, {}, b""

    target = BatchTarget(answer)
    client = http(target, each_write_atomic=True)
    accounts = ["A", "BAD", "C", "D"]
    results = await asyncio.gather(*(client.request("PATCH", address(a), body={"CreditLimit": 1}) for a in accounts),
                                   return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Response", "ValidationFailed", "Response", "Response"]
    assert isinstance(results[1], ValidationFailed) and "Credit limit is not valid" in str(results[1])
    assert all(isinstance(item, list) and len(item) == 1 for item in target.batches[0])  # a changeset per write


async def test_a_batch_answered_as_a_whole_with_429_is_waited_out_and_sent_again() -> None:
    target = BatchTarget(lambda part: (204, {}, b""))
    target.whole = [429]
    client = http(target)
    results = await asyncio.gather(*(client.request("PATCH", address(f"C-{n}"), body={"X": n}) for n in range(5)))
    assert [r.status_code for r in results] == [204] * 5
    assert client.stats.throttled == 5 and len(target.batches) == 1  # answered once it was let through


async def test_parts_a_stopped_batch_did_not_reach_are_sent_again() -> None:
    class Stopping(BatchTarget):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            response = super().__call__(request)
            if len(self.batches) == 1 and request.url.path.endswith("/$batch"):
                # a target without continue-on-error answers the parts up to the first failure only
                text = response.content.decode()
                first = text.split("--b\r\n")[1]
                return httpx.Response(200, headers=response.headers, content=f"--b\r\n{first}--b--\r\n".encode())
            return response

    target = Stopping(lambda part: (204, {}, b""))
    client = http(target)
    results = await asyncio.gather(*(client.request("PATCH", address(f"C-{n}"), body={"X": n}) for n in range(4)))
    assert [r.status_code for r in results] == [204] * 4
    assert [len(batch) for batch in target.batches] == [4, 3]
