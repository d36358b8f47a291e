"""What the CLI's clients of the engine's management API share: where the engine is and which key it takes
(core.cli.config: flags, a profile, the environment, else the local stack), one httpx client a command,
problem+json answers as the user reads them, polling, and the console.

Each command group (`sync`, `maps`, `errors`, ...) subclasses `ManagementApi` for its routes and opens it with
`connect`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Self, TextIO, TypeVar
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.text import Text

from core.cli import config
from core.cli.config import Connection, ProfileError
from core.connectors import jsonwire

KEY_HEADER = "x-functions-key"

EXIT_OK = 0
EXIT_FAILED = 1  # the engine answered with an error, or what was waited for did not happen
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting; what runs on the engine goes on

# While waiting, an engine that does not answer (restarting host, 502/503/504) is asked again for this long.
POLL_PATIENCE_S = 30.0
# Without a terminal (CI logs), progress is written at most this often unless the state changes.
PLAIN_EVERY_S = 10.0


@dataclass
class Seams:
    """What tests replace: the HTTP transport (httpx.MockTransport), the sleeping between polls, the wait's console."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    poll_interval: float = 0.5
    progress_console: Console | None = None  # default: stderr
    clock: Callable[[], float] = time.monotonic


def seams_of(ctx: typer.Context) -> Seams:
    return ctx.obj if isinstance(ctx.obj, Seams) else Seams()


# --- the management API ---------------------------------------------------------------------------------


class ApiError(Exception):
    """The engine answered with an error, or could not be reached; the message is what the user reads, `problem`
    the problem+json answer for commands that show more of it (the problems of a refused map)."""

    def __init__(self, message: str, *, transient: bool = False, problem: dict[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.problem = problem
        self.status = status  # the HTTP status of an error answer; None when the engine was not reached


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def problem_message(response: httpx.Response) -> str:
    """`title: detail` of a problem+json answer; else the status and the start of the body."""
    body = _json_object(response)
    if isinstance(body, dict) and (body.get("title") or body.get("detail")):
        title = str(body.get("title") or response.reason_phrase or f"HTTP {response.status_code}")
        detail = body.get("detail")
        return f"{title}: {detail}" if detail else title
    text = response.text.strip()
    message = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if text:
        message += f": {text[:300]}"
    if response.status_code in (401, 403):
        message += f" (check --key, DUALWRITE_KEY or the profile; it is sent as {KEY_HEADER})"
    return message


class ManagementApi:
    """Routes under one prefix of the management API, over one httpx client; subclasses name the calls."""

    PREFIX = "/api/manage/v1"

    def __init__(self, client: httpx.Client, base_url: str) -> None:
        self._client = client
        self._base_url = base_url

    def call(self, method: str, path: str, *, body: object = None, params: dict[str, Any] | None = None,
             content: bytes | None = None, exact: bool = False, accept: Collection[int] = ()) -> Any:
        """The answer's JSON; an error answer or an unreachable engine is an ApiError. `content` is sent as it is
        (a map file: no re-serializing, every digit stays); `exact` reads numbers with a fraction as Decimal;
        `accept`: error statuses whose JSON body is an answer (deployment's report comes with a 502)."""
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = self._client.request(method, path, json=body, params=params, content=content, headers=headers)
        except httpx.TransportError as error:
            raise ApiError(
                f"cannot reach the engine at {self._base_url} ({type(error).__name__}: {error}); "
                "is it running (locally: make run), or is --url / DUALWRITE_URL wrong?",
                transient=True,
            ) from None
        if response.is_error and response.status_code not in accept:
            raise ApiError(problem_message(response), transient=response.status_code in (502, 503, 504),
                           problem=_json_object(response), status=response.status_code)
        try:
            return jsonwire.loads(response.content) if exact else response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: the engine's answer is not JSON: {response.text[:200]}") from None


def segment(value: str) -> str:
    """A name or id as one path segment: a stray `/` or `?` must not reach another route."""
    return quote(value, safe="")


Api = TypeVar("Api", bound=ManagementApi)


def connection(url: str | None, key: str | None, profile: str | None) -> Connection:
    """Where the engine is and which key it takes (core.cli.config); a profile problem is a message on stderr and
    exit 2 for a profile that does not exist, 1 for a profile file that cannot be read."""
    err = stream_console(stderr=True)
    try:
        found = config.resolve(url, key, profile)
    except ProfileError as error:
        err.print(Text(str(error)))
        raise typer.Exit(error.exit_code) from None
    for warning in found.warnings:
        err.print(Text(f"warning: {warning}"))
    return found


@contextmanager
def connect(ctx: typer.Context, url: str | None, key: str | None, api: type[Api],
            profile: str | None = None) -> Iterator[Api]:
    """One client for the command; an ApiError becomes `message` on stderr and exit 1."""
    found = connection(url, key, profile)
    headers = {KEY_HEADER: found.key, "accept": "application/json"}
    try:
        with httpx.Client(base_url=found.url + api.PREFIX, headers=headers, transport=seams_of(ctx).transport,
                          timeout=30) as client:
            yield api(client, found.url)
    except ApiError as error:
        message = str(error)
        if error.status in (401, 403):
            message += f"; the key sent came from {found.key_from}"
        stream_console(stderr=True).print(Text(message))
        raise typer.Exit(EXIT_FAILED) from None


T = TypeVar("T")


class WaitTimedOut(Exception):
    """`poll` gave up: `timeout` seconds went by and what it waited for did not happen."""

    def __init__(self, last: object) -> None:
        super().__init__("timed out")
        self.last = last


def poll(current: T, fetch: Callable[[], T], done: Callable[[T], bool], seams: Seams, *,
         report: Callable[[T], None], timeout: float | None = None) -> T:
    """Ask again (`fetch`) every poll interval until `done`, reporting each answer (and `current` first).

    An engine that does not answer for the moment (ApiError.transient) is asked again for up to POLL_PATIENCE_S;
    with `timeout`, gives up with WaitTimedOut once that many seconds of the seams' clock have gone by.
    """
    started = seams.clock()
    unanswered = 0.0
    report(current)
    while not done(current):
        if timeout is not None and seams.clock() - started >= timeout:
            raise WaitTimedOut(current)
        seams.sleep(seams.poll_interval)
        try:
            answer = fetch()
        except ApiError as error:
            unanswered += seams.poll_interval
            if not error.transient or unanswered >= POLL_PATIENCE_S:
                raise
            continue
        unanswered = 0.0
        current = answer
        report(current)
    return current


class Reporter:
    """Shows each answer of a wait (`update`), around the wait as a context manager; plain lines by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, answer: dict[str, Any]) -> None:
        raise NotImplementedError


class BarsReporter(Reporter):
    """A reporter drawing rich progress bars on a terminal, for as long as the wait lasts."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()


def wait_console(seams: Seams) -> tuple[Console, bool]:
    """Where a wait is shown (stderr unless a test says otherwise), and whether it is a terminal to draw bars on."""
    console = seams.progress_console or stream_console(stderr=True)
    return console, console.is_terminal and not console.is_dumb_terminal


# --- output ---------------------------------------------------------------------------------------------


def stream_console(stderr: bool = False) -> Console:
    """A console on the current stream; without a terminal, wide enough that tables are not squeezed in logs."""
    stream: TextIO = sys.stderr if stderr else sys.stdout
    tty = getattr(stream, "isatty", lambda: False)()
    width = None if tty or os.environ.get("COLUMNS") else 160
    return Console(file=stream, width=width, highlight=False, emoji=False, soft_wrap=True)


def print_json(data: object) -> None:
    # jsonwire: a map's decimals (read `exact`) print as the numbers they are
    sys.stdout.write(jsonwire.dumps(data, indent=2).decode() + "\n")


def when(value: object) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS`; empty for none."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# --- the options every client command takes -------------------------------------------------------------

Url = Annotated[str | None, typer.Option(
    "--url", show_default=False,
    help=f"the engine's base URL (default: --profile's, DUALWRITE_URL, DUALWRITE_PROFILE's or the default profile's, "
         f"else the local stack, {config.LOCAL_URL})")]
# `--api-key` too: `dualwrite activity` has a `--key` of its own (a record's key, as on the route).
Key = Annotated[str | None, typer.Option(
    "--key", "--api-key", show_default=False,
    help=f"admin (master) key, sent as {KEY_HEADER} (default: --profile's, DUALWRITE_KEY, DUALWRITE_PROFILE's or the "
         "default profile's, else the local host's DEVHOST_MASTER_KEY)")]
ProfileName = Annotated[str | None, typer.Option(
    "--profile", metavar="NAME", show_default=False,
    help="a profile of `dualwrite profile list` (default: DUALWRITE_PROFILE, else the profile file's default)")]
AsJson = Annotated[bool, typer.Option("--json", help="print the API's JSON as is")]
