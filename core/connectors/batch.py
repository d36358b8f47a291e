"""OData v4 multipart `$batch`: build the body of a list of operations, parse the answer per operation.

Both targets take the same format (CRLF everywhere). With `atomic=True` the operations go in one
changeset (all or nothing); a failed changeset answers with the failing part only, so callers get
fewer results than operations and must check `len(results)` against what they sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.connectors import jsonwire

CRLF = "\r\n"


@dataclass(frozen=True)
class BatchOp:
    method: str
    url: str  # absolute, or relative to the service root
    body: Any = None
    headers: Mapping[str, str] | None = None
    content_id: str | None = None


@dataclass
class BatchResult:
    """One operation's answer; header names are lower case."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body_text: str = ""
    content_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def json(self) -> Any:
        return jsonwire.loads(self.body_text) if self.body_text.strip() else None


def build_batch(ops: Sequence[BatchOp], *, atomic: bool = False, each_write_atomic: bool = False,
                boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type header, body) of a `$batch` request. `each_write_atomic`: every write in a changeset
    of its own (for a target that takes writes only inside changesets), reads outside."""
    if not ops:
        raise ValueError("ops: a $batch needs at least one operation")
    boundary = boundary or f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    if each_write_atomic and not atomic:
        for index, op in enumerate(ops, start=1):
            lines.append(f"--{boundary}")
            if op.method.upper() == "GET":
                lines += _part(op, op.content_id)
                continue
            changeset = f"changeset_{uuid.uuid4()}"
            lines += [f'Content-Type: multipart/mixed; boundary="{changeset}"', "", f"--{changeset}"]
            lines += _part(op, op.content_id or str(index))
            lines.append(f"--{changeset}--")
    elif atomic:
        changeset = f"changeset_{uuid.uuid4()}"
        lines += [f"--{boundary}", f'Content-Type: multipart/mixed; boundary="{changeset}"', ""]
        for index, op in enumerate(ops, start=1):
            if op.method.upper() == "GET":
                raise ValueError(f"ops[{index - 1}]: GET is not allowed inside a changeset")
            lines.append(f"--{changeset}")
            lines += _part(op, op.content_id or str(index))
        lines.append(f"--{changeset}--")
    else:
        for op in ops:
            lines.append(f"--{boundary}")
            lines += _part(op, op.content_id)
    lines.append(f"--{boundary}--")
    lines.append("")
    return f'multipart/mixed; boundary="{boundary}"', CRLF.join(lines).encode()


def _part(op: BatchOp, content_id: str | None) -> list[str]:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{op.method.upper()} {op.url} HTTP/1.1"]
    headers = dict(op.headers or {})
    body = b""
    if op.body is not None:
        # Bytes are a body already written (jsonwire's exact decimals); anything else is JSON to write.
        body = op.body if isinstance(op.body, bytes) else jsonwire.dumps(op.body)
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json; type=entry"
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["", body.decode()]
    return lines


def parse_batch(content_type: str, body: bytes | str) -> list[BatchResult]:
    """The operations' answers in order (changeset parts flattened in place)."""
    text = body.decode() if isinstance(body, bytes) else body
    boundary = _boundary(content_type)
    results: list[BatchResult] = []
    for part in _split(text, boundary):
        headers, payload = _headers_and_rest(part)
        inner_type = headers.get("content-type", "")
        if inner_type.lower().startswith("multipart/mixed"):
            results += parse_batch(inner_type, payload)
        else:
            results.append(_http_response(payload, headers.get("content-id")))
    return results


def _boundary(content_type: str) -> str:
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip().strip('"')
    raise ValueError(f"Content-Type {content_type!r}: no multipart boundary")


def _split(text: str, boundary: str) -> list[str]:
    text = text.replace("\r\n", "\n")
    delimiter = f"--{boundary}"
    parts: list[str] = []
    for chunk in text.split(delimiter)[1:]:
        if chunk.startswith("--"):
            break
        parts.append(chunk.lstrip("\n").removesuffix("\n"))
    return parts


def _headers_and_rest(part: str) -> tuple[dict[str, str], str]:
    head, _, rest = part.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, rest


def _http_response(payload: str, content_id: str | None) -> BatchResult:
    status_line, _, rest = payload.partition("\n")
    pieces = status_line.split(" ", 2)
    if len(pieces) < 2 or not pieces[1].isdigit():
        raise ValueError(f"batch part: not an HTTP status line: {status_line[:100]!r}")
    headers, body = _headers_and_rest(rest if "\n\n" in rest else rest + "\n\n")  # a part may have no body
    return BatchResult(status=int(pieces[1]), headers=headers, body_text=body.strip(), content_id=content_id)
