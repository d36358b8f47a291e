"""`$batch` (reference §2.5): multipart/mixed requests, changesets as atomic transactions with
Content-ID references, `Prefer: odata.continue-on-error`, at most 1000 requests, responses in order."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from devstack.dataverse.errors import bad_request
from devstack.dataverse.records import API_PREFIX, content_ids
from devstack.dataverse.store import Database

MAX_REQUESTS = 1000


@dataclass
class InnerRequest:
    method: str
    url: str  # path relative to the API root, with query string
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class InnerResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Changeset:
    requests: list[InnerRequest] = field(default_factory=list)


Handler = Callable[[InnerRequest], Awaitable[InnerResponse]]


class _ChangesetFailed(Exception):
    def __init__(self, response: InnerResponse, content_id: str | None) -> None:
        super().__init__("changeset failed")
        self.response = response
        self.content_id = content_id


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not match:
        raise bad_request("The batch request must have a multipart/mixed Content-Type with a boundary.")
    return match.group(1)


def _split_headers(block: str) -> tuple[dict[str, str], str]:
    head, _, rest = block.partition("\n\n")
    headers = {}
    for line in head.split("\n"):
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _parts(body: str, boundary: str) -> list[str]:
    delimiter = "--" + boundary
    if delimiter not in body:
        raise bad_request(f"The batch body does not contain the boundary '{boundary}'.")
    chunks = body.split(delimiter)[1:]
    parts = []
    for chunk in chunks:
        if chunk.startswith("--"):
            break
        parts.append(chunk.strip("\n"))
    return parts


def _request(block: str, content_id: str | None) -> InnerRequest:
    _, http = _split_headers(block)
    first, _, rest = http.lstrip("\n").partition("\n")
    pieces = first.split()
    if len(pieces) < 2:
        raise bad_request(f"Invalid request line in batch part: '{first}'.")
    method, url = pieces[0].upper(), pieces[1]
    headers, body = _split_headers(rest)
    split = urlsplit(url)
    path = split.path
    if API_PREFIX in path:
        path = path.split(API_PREFIX, 1)[1]
    path = path.lstrip("/")
    if split.query:
        path += "?" + split.query
    return InnerRequest(method, path, headers, body.rstrip("\n").encode(), content_id)


def parse_batch(body: bytes, content_type: str) -> list[InnerRequest | Changeset]:
    text = body.decode("utf-8").replace("\r\n", "\n")
    items: list[InnerRequest | Changeset] = []
    total = 0
    for part in _parts(text, boundary_of(content_type)):
        headers, rest = _split_headers(part)
        kind = headers.get("content-type", "")
        if kind.startswith("multipart/mixed"):
            changeset = Changeset()
            for inner in _parts(rest, boundary_of(kind)):
                inner_headers, _ = _split_headers(inner)
                request = _request(inner, inner_headers.get("content-id"))
                if request.method == "GET":
                    raise bad_request("GET requests are not allowed inside a changeset.")
                if request.url.startswith("$batch"):
                    raise bad_request("Nested batch requests are not supported.")
                changeset.requests.append(request)
            total += len(changeset.requests)
            items.append(changeset)
        elif kind.startswith("application/http"):
            request = _request(part, headers.get("content-id"))
            if request.url.startswith("$batch"):
                raise bad_request("Nested batch requests are not supported.")
            items.append(request)
            total += 1
        else:
            raise bad_request(f"Unsupported batch part Content-Type '{kind}'.")
    if total > MAX_REQUESTS:
        raise bad_request(f"The number of requests in the batch ({total}) exceeds the limit of {MAX_REQUESTS}.")
    return items


def _render(response: InnerResponse, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    reason = HTTPStatus(response.status).phrase
    lines += ["", f"HTTP/1.1 {response.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    lines += ["", response.body.decode("utf-8")]
    return "\r\n".join(lines)


async def execute_batch(
    items: list[InnerRequest | Changeset], handler: Handler, db: Database, *, continue_on_error: bool
) -> tuple[int, str, str]:
    """Run the parts in order. Returns (outer status, response content type, response body)."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    rendered: list[str] = []
    status = 200
    for item in items:
        if isinstance(item, InnerRequest):
            item.url = _substitute(item.url, {})
            response = await handler(item)
            rendered.append(_render(response, item.content_id))
            failed = response.status >= 400
        else:
            text, failed = await _changeset(item, handler, db)
            rendered.append(text)
        if failed and not continue_on_error:
            status = 400
            break
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in rendered) + f"--{boundary}--\r\n"
    return status, f"multipart/mixed; boundary={boundary}", body


def _substitute(url: str, refs: dict[str, str]) -> str:
    match = re.match(r"^\$(\w+)(.*)$", url)
    if match and match.group(1) in refs:
        return refs[match.group(1)] + match.group(2)
    return url


async def _changeset(changeset: Changeset, handler: Handler, db: Database) -> tuple[str, bool]:
    boundary = f"changesetresponse_{uuid.uuid4()}"
    refs: dict[str, str] = {}
    token = content_ids.set(refs)
    responses: list[tuple[InnerResponse, str | None]] = []
    try:
        async with db.unit():
            for request in changeset.requests:
                request.url = _substitute(request.url, refs)
                response = await handler(request)
                if response.status >= 400:
                    raise _ChangesetFailed(response, request.content_id)
                entity_id = response.headers.get("OData-EntityId")
                if request.content_id and entity_id:
                    refs[request.content_id] = entity_id.split(API_PREFIX, 1)[-1]
                responses.append((response, request.content_id))
    except _ChangesetFailed as failure:
        # The whole changeset rolled back; Dataverse answers with the failing request's response only.
        return _render(failure.response, failure.content_id), True
    finally:
        content_ids.reset(token)
    inner = "".join(f"--{boundary}\r\n{_render(r, cid)}\r\n" for r, cid in responses) + f"--{boundary}--"
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}", False
