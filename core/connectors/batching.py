"""Requests made at about the same time go out as one `$batch` (a dataloader at the HTTP seam).

Apply runs many records side by side; each reads and writes one row at a time, as the code reads
best. Here those single requests meet (core.gather): every request issued within `window` seconds
of the first (or until `max_parts` are waiting) is sent in one `$batch`, and each caller gets back
the answer of its own part as an ordinary httpx.Response, which ODataHttp classifies, retries or
raises exactly as if it had been sent alone. A lone request is sent as it is. A `$batch` answered as
a whole (429, 503, a refused body) gives that answer to every part; parts the target did not get to
(a batch stopped at a failure) are sent again in a batch of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from core.connectors.batch import BatchOp, BatchResult, build_batch, parse_batch
from core.gather import Gather


@dataclass(frozen=True)
class _Part:
    method: str
    url: httpx.URL
    content: bytes | None
    headers: dict[str, str]


class Batcher:
    def __init__(self, client: httpx.AsyncClient, batch_url: str, *, max_parts: int = 100, window: float = 0.003,
                 each_write_atomic: bool = False, continue_on_error: bool = True) -> None:
        self.client = client
        self.batch_url = batch_url
        self.each_write_atomic = each_write_atomic
        self.continue_on_error = continue_on_error
        self.batches = 0  # $batch requests sent (a test and a bench can read it)
        self._gather: Gather[_Part, httpx.Response] = Gather(self._send, window=window, max_items=max_parts)

    async def request(self, method: str, url: httpx.URL, *, content: bytes | None,
                      headers: dict[str, str]) -> httpx.Response:
        return await self._gather.submit(_Part(method, url, content, headers))

    async def _send(self, parts: list[_Part]) -> list[httpx.Response | BaseException]:
        """Each part's answer. A transport failure raises: it reaches every caller, who decides on retries."""
        if len(parts) == 1:
            part = parts[0]
            return [await self.client.request(part.method, part.url, content=part.content, headers=part.headers)]
        answers: dict[int, httpx.Response] = {}
        pending = list(range(len(parts)))
        while pending:
            response = await self._post([parts[i] for i in pending])
            if not response.headers.get("Content-Type", "").startswith("multipart/"):
                for i in pending:  # answered as a whole: the same answer for each
                    answers[i] = httpx.Response(response.status_code, headers=response.headers,
                                                content=response.content, request=_request(parts[i]))
                break
            results = parse_batch(response.headers.get("Content-Type", ""), response.content)
            if not results:
                raise httpx.RemoteProtocolError(f"$batch answered {response.status_code} with no parts")
            for i, result in zip(pending, results, strict=False):
                answers[i] = _response(parts[i], result)
            pending = pending[len(results):]  # not reached: the batch stopped at a failure
        return [answers[i] for i in range(len(parts))]

    async def _post(self, parts: list[_Part]) -> httpx.Response:
        ops = [BatchOp(p.method, str(p.url), p.content, p.headers, None) for p in parts]
        content_type, body = build_batch(ops, each_write_atomic=self.each_write_atomic)
        headers = {"Content-Type": content_type}
        if self.continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        self.batches += 1
        return await self.client.request("POST", self.batch_url, content=body, headers=headers)

    async def aclose(self) -> None:
        await self._gather.aclose()


def _request(part: _Part) -> httpx.Request:
    return httpx.Request(part.method, part.url, headers=part.headers, content=part.content)


def _response(part: _Part, result: BatchResult) -> httpx.Response:
    return httpx.Response(result.status, headers=list(result.headers.items()), content=result.body_text.encode(),
                          request=_request(part))
