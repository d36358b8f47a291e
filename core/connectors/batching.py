"""Requests made at about the same time go out as one `$batch` (a dataloader at the HTTP seam).

Apply runs many records side by side; each reads and writes one row at a time, as the code reads
best. Here those single requests meet: every request issued within `window` seconds of the first
(or until `max_parts` are waiting) is sent in one `$batch`, and each caller gets back the answer of
its own part as an ordinary httpx.Response, which ODataHttp classifies, retries or raises exactly
as if it had been sent alone. A lone request is sent as it is. A `$batch` answered as a whole
(429, 503, a refused body) gives that answer to every part; parts the target did not get to (a
batch stopped at a failure) are sent again with the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from core.connectors.batch import BatchOp, BatchResult, build_batch, parse_batch

Send = Callable[..., Awaitable[httpx.Response]]


@dataclass
class _Part:
    method: str
    url: httpx.URL
    content: bytes | None
    headers: dict[str, str]
    future: asyncio.Future[httpx.Response] = field(repr=False)


class Batcher:
    def __init__(self, client: httpx.AsyncClient, batch_url: str, *, max_parts: int = 100, window: float = 0.003,
                 each_write_atomic: bool = False, continue_on_error: bool = True) -> None:
        self.client = client
        self.batch_url = batch_url
        self.max_parts = max_parts
        self.window = window
        self.each_write_atomic = each_write_atomic
        self.continue_on_error = continue_on_error
        self.batches = 0  # $batch requests sent (a test and a bench can read it)
        self._pending: list[_Part] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def request(self, method: str, url: httpx.URL, *, content: bytes | None,
                      headers: dict[str, str]) -> httpx.Response:
        future: asyncio.Future[httpx.Response] = asyncio.get_running_loop().create_future()
        self._enqueue(_Part(method, url, content, headers, future))
        return await future

    def _enqueue(self, part: _Part) -> None:
        self._pending.append(part)
        if len(self._pending) >= self.max_parts:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parts, self._pending = self._pending, []
        if parts:
            task = asyncio.get_running_loop().create_task(self._send(parts))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, parts: list[_Part]) -> None:
        try:
            if len(parts) == 1:
                part = parts[0]
                _settle(part, await self.client.request(part.method, part.url, content=part.content,
                                                        headers=part.headers))
                return
            await self._send_batch(parts)
        except BaseException as error:  # a transport failure reaches every caller, who decides on retries
            for part in parts:
                if not part.future.done():
                    part.future.set_exception(error)
            if not isinstance(error, Exception):
                raise

    async def _send_batch(self, parts: list[_Part]) -> None:
        ops = [BatchOp(p.method, str(p.url), p.content, p.headers, None) for p in parts]
        content_type, body = build_batch(ops, each_write_atomic=self.each_write_atomic)
        headers = {"Content-Type": content_type}
        if self.continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        self.batches += 1
        response = await self.client.request("POST", self.batch_url, content=body, headers=headers)
        if not response.headers.get("Content-Type", "").startswith("multipart/"):
            for part in parts:  # answered as a whole: the same answer for each
                _settle(part, httpx.Response(response.status_code, headers=response.headers,
                                             content=response.content, request=_request(part)))
            return
        results = parse_batch(response.headers.get("Content-Type", ""), response.content)
        for part, result in zip(parts, results, strict=False):
            _settle(part, _response(part, result))
        for part in parts[len(results):]:  # not reached: the batch stopped at a failure
            self._enqueue(part)

    async def aclose(self) -> None:
        self._flush()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _settle(part: _Part, response: httpx.Response) -> None:
    if not part.future.done():
        part.future.set_result(response)


def _request(part: _Part) -> httpx.Request:
    return httpx.Request(part.method, part.url, headers=part.headers, content=part.content)


def _response(part: _Part, result: BatchResult) -> httpx.Response:
    return httpx.Response(result.status, headers=list(result.headers.items()), content=result.body_text.encode(),
                          request=_request(part))
