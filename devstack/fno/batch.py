"""OData v4 `$batch` in the multipart/mixed format F&O speaks; each changeset is all-or-nothing."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from devstack.fno.auth import Caller
from devstack.fno.errors import ODataError, bad_request
from devstack.fno.odata import Call, ODataHandler, Reply, error_reply


@dataclass
class Part:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None


class _Rollback(Exception):
    def __init__(self, reply: Reply, content_id: str | None) -> None:
        self.reply = reply
        self.content_id = content_id


def boundary_of(content_type: str) -> str:
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not m or not content_type.lower().startswith("multipart/mixed"):
        raise bad_request("A $batch request needs Content-Type multipart/mixed with a boundary.")
    return m.group(1)


def _split(body: bytes, boundary: str) -> list[bytes]:
    delim = b"--" + boundary.encode()
    sections = body.split(delim)
    parts = []
    for section in sections[1:]:
        if section.startswith(b"--"):
            break
        parts.append(re.sub(rb"\r?\n$", b"", re.sub(rb"^[ \t]*\r?\n", b"", section), count=1))
    return parts


def _head_and_body(blob: bytes) -> tuple[list[str], bytes]:
    m = re.search(rb"\r?\n\r?\n", blob)
    if not m:
        return blob.decode("utf-8", "replace").splitlines(), b""
    return blob[: m.start()].decode("utf-8", "replace").splitlines(), blob[m.end():]


def _headers(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _parse_request(blob: bytes) -> Part:
    outer_lines, http_blob = _head_and_body(blob)
    outer = _headers(outer_lines)
    lines, body = _head_and_body(http_blob)
    if not lines:
        raise bad_request("A $batch part has no request line.")
    request_line = lines[0].split()
    if len(request_line) < 2:
        raise bad_request(f"Bad request line in $batch part: '{lines[0]}'.")
    headers = _headers(lines[1:])
    return Part(request_line[0].upper(), request_line[1], headers, body.rstrip(b"\r\n"),
                outer.get("content-id") or headers.get("content-id"))


def parse(body: bytes, content_type: str) -> list[Part | list[Part]]:
    items: list[Part | list[Part]] = []
    for blob in _split(body, boundary_of(content_type)):
        lines, content = _head_and_body(blob)
        headers = _headers(lines)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            changeset = [_parse_request(inner) for inner in _split(content, boundary_of(ctype))]
            items.append(changeset)
        else:
            items.append(_parse_request(blob))
    return items


def _target(url: str, base_url: str, ids: dict[str, str]) -> tuple[str, str]:
    if url.startswith("$"):
        ref, _, tail = url[1:].partition("/")
        if ref in ids:
            url = ids[ref] + ("/" + tail if tail else "")
    if url.startswith(("http://", "https://")):
        parts = urlsplit(url)
        url = parts.path + ("?" + parts.query if parts.query else "")
    base_path = urlsplit(base_url).path  # /data/
    if url.startswith(base_path):
        url = url[len(base_path):]
    elif url.startswith("/"):
        url = url.lstrip("/")
    target, _, query = url.partition("?")
    return target, query


def _http_part(reply: Reply, content_id: str | None) -> bytes:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    reason = HTTPStatus(reply.status).phrase
    lines = [f"HTTP/1.1 {reply.status} {reason}", *(f"{k}: {v}" for k, v in reply.headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode() + reply.body


def execute(handler: ODataHandler, body: bytes, content_type: str, caller: Caller, base_url: str) -> Reply:
    try:
        items = parse(body, content_type)
    except ODataError as err:
        return error_reply(err)
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for item in items:
        if isinstance(item, Part):
            reply = _run(handler, item, caller, base_url, {})
            chunks.append(_http_part(reply, item.content_id))
            continue
        chunks.append(_changeset(handler, item, caller, base_url))
    out = b"".join(b"--" + boundary.encode() + b"\r\n" + c + b"\r\n" for c in chunks) + f"--{boundary}--\r\n".encode()
    return Reply(200, out, {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"})


def _changeset(handler: ODataHandler, parts: list[Part], caller: Caller, base_url: str) -> bytes:
    boundary = f"changesetresponse_{uuid.uuid4()}"
    ids: dict[str, str] = {}
    replies: list[tuple[Reply, str | None]] = []
    try:
        with handler.service.unit():
            for part in parts:
                reply = _run(handler, part, caller, base_url, ids)
                if reply.status >= 400:
                    raise _Rollback(reply, part.content_id)
                replies.append((reply, part.content_id))
                location = reply.headers.get("Location")
                if part.content_id and location:
                    ids[part.content_id] = location
    except _Rollback as failed:
        # OData v4: a failed changeset answers with the single error response instead of the set.
        return _http_part(failed.reply, failed.content_id)
    inner = b"".join(b"--" + boundary.encode() + b"\r\n" + _http_part(r, cid) + b"\r\n" for r, cid in replies)
    inner += f"--{boundary}--".encode()
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode() + inner


def _run(handler: ODataHandler, part: Part, caller: Caller, base_url: str, ids: dict[str, str]) -> Reply:
    target, query = _target(part.url, base_url, ids)
    if target.startswith("$batch"):
        return error_reply(bad_request("A $batch cannot contain another $batch."))
    return handler.handle(Call(part.method, target, query, part.headers, part.body, base_url), caller)
