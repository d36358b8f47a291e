"""`dualwrite sync ...`: start, follow, list and cancel initial-sync and reconciliation runs.

A client of the engine's management API (`/api/manage/v1/sync`), over HTTP with httpx; nothing
here touches the stores. With no flags it talks to the local stack of `make run`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

API_PREFIX = "/api/manage/v1/sync"
DEFAULT_URL = "http://localhost:7071"
DEFAULT_KEY = "local-master-key"
# Where the local host reads its keys, relative to the working directory as the host reads them.
SETTINGS_FILES = ("local.settings.json", "local.settings.sample.json")
KEY_HEADER = "x-functions-key"

TERMINAL = frozenset({"completed", "failed", "cancelled"})
EXIT_OK = 0
EXIT_FAILED = 1  # the run failed or was cancelled, or the API answered with an error
EXIT_ROWS = 3  # the run completed, but rows failed or a compare found drift
EXIT_INTERRUPTED = 130  # Ctrl-C while waiting; the run goes on

# While waiting, an engine that does not answer (restarting host, 502/503/504) is asked again for this long.
POLL_PATIENCE_S = 30.0
# Without a terminal (CI logs), a map's progress is written at most this often unless its status changes.
PLAIN_EVERY_S = 10.0

EXIT_CODES_HELP = (
    "Exit codes of initial and reconcile: 0 the run completed without failed rows (with --no-wait: it started); "
    "3 it completed but rows failed (or a compare found drift; --repair writes what it finds); "
    "1 the run failed or was cancelled, or the engine answered with an error; 2 usage error; "
    "130 Ctrl-C stopped the waiting (the run goes on). Other commands: 0, 1 or 2 alike."
)

app = typer.Typer(
    name="sync",
    help="Initial sync and reconciliation runs, through the engine's management API.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)


class Side(StrEnum):
    fno = "fno"
    dataverse = "dataverse"


@dataclass
class Seams:
    """What tests replace: the HTTP transport (httpx.MockTransport), the sleeping between polls, the wait's console."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    poll_interval: float = 0.5
    progress_console: Console | None = None  # default: stderr
    clock: Callable[[], float] = time.monotonic


def _seams(ctx: typer.Context) -> Seams:
    return ctx.obj if isinstance(ctx.obj, Seams) else Seams()


# --- where the engine is and which key it takes ---------------------------------------------------------


def resolve_url(url: str | None = None) -> str:
    """--url, else DUALWRITE_URL, else the local host of `make run`."""
    return (url or os.environ.get("DUALWRITE_URL") or DEFAULT_URL).rstrip("/")


def resolve_key(key: str | None = None, directory: Path | None = None) -> str:
    """--key, else DUALWRITE_KEY, else the local host's master key from its settings file, else its default."""
    return key or os.environ.get("DUALWRITE_KEY") or settings_master_key(directory) or DEFAULT_KEY


def settings_master_key(directory: Path | None = None) -> str | None:
    """DEVHOST_MASTER_KEY from local.settings.json's Values, falling back to the committed sample."""
    for name in SETTINGS_FILES:
        path = (directory or Path.cwd()) / name
        try:
            values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
        except (OSError, ValueError, AttributeError):
            continue
        value = values.get("DEVHOST_MASTER_KEY") if isinstance(values, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


# --- the management API ---------------------------------------------------------------------------------


class ApiError(Exception):
    """The engine answered with an error, or could not be reached; the message is what the user reads."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def problem_message(response: httpx.Response) -> str:
    """`title: detail` of a problem+json answer; else the status and the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("title") or body.get("detail")):
        title = str(body.get("title") or response.reason_phrase or f"HTTP {response.status_code}")
        detail = body.get("detail")
        return f"{title}: {detail}" if detail else title
    text = response.text.strip()
    message = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if text:
        message += f": {text[:300]}"
    if response.status_code in (401, 403):
        message += f" (check --key or DUALWRITE_KEY; it is sent as {KEY_HEADER})"
    return message


class SyncApi:
    """The sync runs of the management API, over one httpx client."""

    def __init__(self, client: httpx.Client, base_url: str) -> None:
        self._client = client
        self._base_url = base_url

    def _call(self, method: str, path: str, *, body: object = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body, params=params)
        except httpx.TransportError as error:
            raise ApiError(
                f"cannot reach the engine at {self._base_url} ({type(error).__name__}: {error}); "
                "is it running (locally: make run), or is --url / DUALWRITE_URL wrong?",
                transient=True,
            ) from None
        if response.is_error:
            raise ApiError(problem_message(response), transient=response.status_code in (502, 503, 504))
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{method} {path}: the engine's answer is not JSON: {response.text[:200]}") from None

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/runs", body=body))

    def runs(self) -> dict[str, Any]:
        return dict(self._call("GET", "/runs"))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/runs/{_segment(run_id)}"))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/runs/{_segment(run_id)}/cancel"))

    def drift(self, run_id: str, *, map_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if map_name:
            params["map"] = map_name
        return list(self._call("GET", f"/runs/{_segment(run_id)}/drift", params=params).get("items") or [])


def _segment(run_id: str) -> str:
    """A run id as one path segment: a stray `/` or `?` must not reach another route."""
    return quote(run_id, safe="")


@contextmanager
def _api(ctx: typer.Context, url: str | None, key: str | None) -> Iterator[SyncApi]:
    """One client for the command; an ApiError becomes `message` on stderr and exit 1."""
    base = resolve_url(url)
    headers = {KEY_HEADER: resolve_key(key), "accept": "application/json"}
    try:
        with httpx.Client(base_url=base + API_PREFIX, headers=headers, transport=_seams(ctx).transport,
                          timeout=30) as client:
            yield SyncApi(client, base)
    except ApiError as error:
        _console(stderr=True).print(Text(str(error)))
        raise typer.Exit(EXIT_FAILED) from None


# --- output ---------------------------------------------------------------------------------------------


def _console(stderr: bool = False) -> Console:
    """A console on the current stream; without a terminal, wide enough that tables are not squeezed in logs."""
    stream: TextIO = sys.stderr if stderr else sys.stdout
    tty = getattr(stream, "isatty", lambda: False)()
    width = None if tty or os.environ.get("COLUMNS") else 160
    return Console(file=stream, width=width, highlight=False, emoji=False, soft_wrap=True)


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _n(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value) if isinstance(value, int | float) else 0


def _count(value: int) -> str:
    return f"{value:,}"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


def _when(value: object) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _maps(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in run.get("maps") or [] if isinstance(m, dict)]


def _drift(item: dict[str, Any]) -> int:
    return _n(item, "differs") + _n(item, "missing_on_target") + _n(item, "missing_on_source")


def _totals(run: dict[str, Any]) -> dict[str, int]:
    names = ("read", "written", "matched", "skipped", "failed", "differs", "missing_on_target", "missing_on_source")
    return {name: sum(_n(m, name) for m in _maps(run)) for name in names}


def _figures(item: dict[str, Any], kind: str) -> list[tuple[str, int]]:
    """The counters that matter for the run's kind, in reading order."""
    names = ["read", "written", "matched", "skipped", "failed"]
    if kind == "compare":
        names = ["read", "matched", "differs", "missing_on_target", "missing_on_source", "failed"]
    elif kind == "repair":
        names = ["read", "written", "matched", "differs", "missing_on_target", "missing_on_source", "deleted", "failed"]
    return [(name.replace("_", " "), _n(item, name)) for name in names]


def _processed(item: dict[str, Any]) -> int:
    """Rows of the read pages that are through (written, matched, skipped, failed or found different)."""
    handled = sum(_n(item, n) for n in ("written", "matched", "skipped", "failed", "differs", "missing_on_target"))
    return min(handled, _n(item, "read"))


def _rate(item: dict[str, Any]) -> str:
    rate = item.get("rows_per_s")
    return f"{rate:,.0f} rows/s" if isinstance(rate, int | float) else ""


def _eta(item: dict[str, Any]) -> str:
    eta = item.get("eta_s")
    return f"ETA {_duration(eta)}" if isinstance(eta, int | float) and item.get("status") != "done" else ""


def _pages(item: dict[str, Any]) -> str:
    done, read = _n(item, "pages_done"), _n(item, "pages_read")
    return f"{done}/{read}" + ("" if item.get("last_page") or item.get("status") == "done" else "+")


def _map_table(run: dict[str, Any]) -> Table:
    kind = str(run.get("kind") or "initial")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("map", "source", "status", "pages"):
        table.add_column(name, no_wrap=True)
    figure_names = [label for label, _ in _figures({}, kind)]
    for label in figure_names:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("rate", justify="right", no_wrap=True)
    for item in _maps(run):
        figures = [_count(value) for _, value in _figures(item, kind)]
        table.add_row(*(Text(str(item.get(n) or "")) for n in ("map", "source", "status")),
                      _pages(item), *figures, _rate(item))
    return table


def _run_line(run: dict[str, Any]) -> Text:
    parts = [f"run {run.get('id')}", str(run.get("kind") or ""), str(run.get("status") or "")]
    if run.get("dry_run"):
        parts.append("dry run")
    line = " · ".join(p for p in parts if p)
    started, finished = run.get("created_at"), run.get("finished_at")
    line += f" · started {_when(started)}" if started else ""
    line += f" · finished {_when(finished)}" if finished else ""
    return Text(line)


def _outcome(run: dict[str, Any]) -> int:
    if run.get("status") != "completed":
        return EXIT_FAILED
    totals = _totals(run)
    # Only a compare leaves drift behind; initial sync and repair write what they find (and report it).
    drift = totals["differs"] + totals["missing_on_target"] + totals["missing_on_source"]
    return EXIT_ROWS if totals["failed"] or (drift and run.get("kind") == "compare") else EXIT_OK


def _conclusion(run: dict[str, Any]) -> tuple[str, int]:
    """The closing sentence of a run and its exit code."""
    run_id, status, code = run.get("id"), run.get("status"), _outcome(run)
    totals = _totals(run)
    if code == EXIT_FAILED:
        message = run.get("message")
        return f"run {run_id} {status}" + (f": {message}" if message else ""), code
    done = ", ".join(f"{_count(totals[n])} {n.replace('_', ' ')}" for n in ("read", "written", "matched", "failed"))
    sentence = f"run {run_id} completed: {done}"
    drift = totals["differs"] + totals["missing_on_target"] + totals["missing_on_source"]
    if drift:
        sentence += (f"; drift: {_count(totals['differs'])} differ, {_count(totals['missing_on_target'])} missing on"
                     f" target, {_count(totals['missing_on_source'])} missing on source"
                     f" (dualwrite sync drift {run_id})")
    if totals["failed"]:
        sentence += "; failed rows are in the error log"
    return sentence, code


# --- following a run ------------------------------------------------------------------------------------


class _Bars:
    """One rich progress bar per map, for a terminal."""

    def __init__(self, console: Console, kind: str) -> None:
        self.kind = kind
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            TextColumn("{task.fields[status]}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[count]}", markup=False),
            TextColumn("{task.fields[figures]}", markup=False),
            TextColumn("{task.fields[rate]}", markup=False),
            TextColumn("{task.fields[eta]}", markup=False),
            console=console,
            transient=True,  # the summary table printed after the run replaces the bars
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def update(self, run: dict[str, Any]) -> None:
        for item in _maps(run):
            name = str(item.get("map") or "?")
            status = str(item.get("status") or "")
            read, processed = _n(item, "read"), _processed(item)
            if status == "waiting":
                total: float | None = 1
                completed, count = 0, ""
            elif item.get("last_page") or status == "done":
                total, completed = read, read if status == "done" else processed
                count = f"{_count(completed)}/{_count(read)}"
            else:  # still reading pages: how many rows there are is not known yet
                total, completed, count = None, processed, f"{_count(processed)}/{_count(read)}+"
            shown = [(label, value) for label, value in _figures(item, self.kind)
                     if label in ("written", "matched", "failed", "differs", "missing on target", "missing on source")]
            figures = "  ".join(f"{label} {_count(value)}" for label, value in shown)
            fields: dict[str, Any] = {"status": status, "count": count, "figures": figures,
                                      "rate": _rate(item), "eta": _eta(item)}
            description = f"{name} ({item.get('source') or '?'})"
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(description, total=total, completed=completed, **fields)
            else:
                self.progress.update(self.tasks[name], description=description, total=total, completed=completed,
                                     **fields)
        self.progress.refresh()


class _Lines:
    """Plain lines for logs (no terminal): a map's state when it changes, its figures every PLAIN_EVERY_S."""

    def __init__(self, console: Console, kind: str, clock: Callable[[], float]) -> None:
        self.console, self.kind, self.clock = console, kind, clock
        self.status: str | None = None
        self.seen: dict[str, tuple[str, tuple[int, ...], float]] = {}

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, run: dict[str, Any]) -> None:
        if run.get("status") != self.status:
            self.status = str(run.get("status"))
            self.console.print(Text(f"run {run.get('id')}: {self.status}"))
        now = self.clock()
        for item in _maps(run):
            name, status = str(item.get("map") or "?"), str(item.get("status") or "")
            figures = _figures(item, self.kind)
            values = tuple(v for _, v in figures)
            before = self.seen.get(name)
            if before and before[0] == status and (before[1] == values or now - before[2] < PLAIN_EVERY_S):
                continue
            self.seen[name] = (status, values, now)
            parts = [f"{label} {_count(value)}" for label, value in figures]
            parts += [p for p in (_rate(item), _eta(item)) if p]
            self.console.print(Text(f"{name} ({item.get('source') or '?'}): {status}, " + ", ".join(parts)))


def _follow(api: SyncApi, run: dict[str, Any], seams: Seams) -> dict[str, Any]:
    """Poll the run until its status is terminal, showing it as it goes."""
    console = seams.progress_console or _console(stderr=True)
    kind = str(run.get("kind") or "initial")
    interactive = console.is_terminal and not console.is_dumb_terminal
    reporter: _Bars | _Lines = _Bars(console, kind) if interactive else _Lines(console, kind, seams.clock)
    unanswered = 0.0
    with reporter:
        reporter.update(run)
        while run.get("status") not in TERMINAL:
            seams.sleep(seams.poll_interval)
            try:
                run = api.run(str(run["id"]))
            except ApiError as error:
                unanswered += seams.poll_interval
                if not error.transient or unanswered >= POLL_PATIENCE_S:
                    raise
                continue
            unanswered = 0.0
            reporter.update(run)
    return run


def _start_and_follow(ctx: typer.Context, body: dict[str, Any], no_wait: bool, url: str | None,
                      key: str | None) -> None:
    seams = _seams(ctx)
    out, err = _console(), _console(stderr=True)
    with _api(ctx, url, key) as api:
        run = api.start(body)
        run_id = str(run.get("id"))
        what = ", ".join(body["maps"]) or "all enabled maps"
        err.print(Text(f"started {body['kind']} run {run_id} ({what}){' (dry run)' if body.get('dry_run') else ''}"))
        if no_wait:
            out.print(Text(f"run {run_id} {run.get('status')}; follow it with: dualwrite sync show {run_id}"))
            return
        try:
            run = _follow(api, run, seams)
        except KeyboardInterrupt:
            err.print(Text(f"stopped waiting; run {run_id} goes on (not cancelled). "
                           f"See it with: dualwrite sync show {run_id}; stop it with: dualwrite sync cancel {run_id}"))
            raise typer.Exit(EXIT_INTERRUPTED) from None
    out.print(_map_table(run))
    _print_sample(out, run)
    sentence, code = _conclusion(run)
    (err if code == EXIT_FAILED else out).print(Text(sentence))
    if code:
        raise typer.Exit(code)


def _print_sample(console: Console, run: dict[str, Any]) -> None:
    sample = [s for s in run.get("sample") or [] if isinstance(s, dict)]
    if not sample:
        return
    console.print(Text("\nsample" + (" of what would be written (dry run)" if run.get("dry_run") else "")))
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("map", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("values", overflow="fold")
    for row in sample:
        table.add_row(Text(str(row.get("map") or "")), Text(str(row.get("key") or "")),
                      Text(json.dumps(row.get("values") or {}, ensure_ascii=False)))
    console.print(table)


def _selection(ctx: typer.Context, names: Sequence[str] | None, all_maps: bool, *, required: bool) -> list[str]:
    chosen = list(dict.fromkeys(names or []))
    if chosen and all_maps:
        ctx.fail("give MAP names or --all, not both")
    if not chosen and not all_maps and required:
        ctx.fail("give the MAP names to sync, or --all for every enabled map")
    return chosen


# --- the commands ---------------------------------------------------------------------------------------

Url = Annotated[str | None, typer.Option(
    "--url", show_default=False, help="the engine's base URL (default: DUALWRITE_URL, else http://localhost:7071)")]
Key = Annotated[str | None, typer.Option(
    "--key", show_default=False,
    help=f"function key, sent as {KEY_HEADER} (default: DUALWRITE_KEY, else DEVHOST_MASTER_KEY of "
         "local.settings.json or local.settings.sample.json, else local-master-key)")]
Maps = Annotated[list[str] | None, typer.Argument(
    metavar="MAP", show_default=False, help="map names; the engine runs them in dependency order")]
All = Annotated[bool, typer.Option("--all", help="every enabled map, in dependency order")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="start the run and return; do not follow it")]
AsJson = Annotated[bool, typer.Option("--json", help="print the API's JSON as is")]
RunId = Annotated[str, typer.Argument(metavar="RUN", help="the run's id")]


@app.command(epilog=EXIT_CODES_HELP)
def initial(
    ctx: typer.Context,
    maps: Maps = None,
    all_maps: All = False,
    source: Annotated[Side | None, typer.Option(
        help="read from this side (default: each map's primary side)", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="read and compare, write nothing")] = False,
    no_wait: NoWait = False,
    retry_failed: Annotated[str | None, typer.Option(
        "--retry-failed", metavar="RUN_ID", show_default=False,
        help="sync again the rows that failed in that run (MAPs or --all optional)")] = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Copy existing rows to the other side: give MAP names or --all.

    Unless --no-wait, follows the run with a progress bar per map until it ends (Ctrl-C stops following, not the run).
    """
    body = {
        "kind": "initial",
        "maps": _selection(ctx, maps, all_maps, required=retry_failed is None),
        "source": source.value if source else None,
        "dry_run": dry_run,
        "retry_failed_of": retry_failed,
    }
    _start_and_follow(ctx, body, no_wait, url, key)


@app.command(epilog=EXIT_CODES_HELP)
def reconcile(
    ctx: typer.Context,
    maps: Maps = None,
    all_maps: All = False,
    repair: Annotated[bool, typer.Option("--repair", help="also write the source's values where they differ")] = False,
    no_wait: NoWait = False,
    url: Url = None,
    key: Key = None,
) -> None:
    """Compare both sides row by row (or --repair the differences): give MAP names or --all.

    Unless --no-wait, follows the run with a progress bar per map until it ends (Ctrl-C stops following, not the run).
    """
    body = {
        "kind": "repair" if repair else "compare",
        "maps": _selection(ctx, maps, all_maps, required=True),
        "source": None,
        "dry_run": False,
        "retry_failed_of": None,
    }
    _start_and_follow(ctx, body, no_wait, url, key)


@app.command()
def runs(ctx: typer.Context, as_json: AsJson = False, url: Url = None, key: Key = None) -> None:
    """List the sync runs, newest first."""
    with _api(ctx, url, key) as api:
        data = api.runs()
    if as_json:
        _print_json(data)
        return
    items = [r for r in data.get("runs") or [] if isinstance(r, dict)]
    out = _console()
    if not items:
        out.print("no sync runs yet")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("id", "kind", "status", "maps", "read", "written", "failed", "drift", "started", "finished"):
        numeric = name in ("read", "written", "failed", "drift")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name != "maps",
                         overflow="fold")
    for run in items:
        totals = _totals(run)
        kind = str(run.get("kind") or "") + (" (dry run)" if run.get("dry_run") else "")
        table.add_row(Text(str(run.get("id") or "")), Text(kind), Text(str(run.get("status") or "")),
                      Text(", ".join(str(m.get("map")) for m in _maps(run))),
                      _count(totals["read"]), _count(totals["written"]), _count(totals["failed"]),
                      _count(totals["differs"] + totals["missing_on_target"] + totals["missing_on_source"]),
                      _when(run.get("created_at")), _when(run.get("finished_at")))
    out.print(table)


@app.command()
def show(ctx: typer.Context, run_id: RunId, as_json: AsJson = False, url: Url = None, key: Key = None) -> None:
    """One run: its maps' progress and figures, and a summary of the drift it found."""
    with _api(ctx, url, key) as api:
        run = api.run(run_id)
        totals = _totals(run)
        drift = totals["differs"] + totals["missing_on_target"] + totals["missing_on_source"]
        items = api.drift(run_id, limit=10) if drift and not as_json else []
    if as_json:
        _print_json(run)
        return
    out = _console()
    out.print(_run_line(run))
    if run.get("message"):
        out.print(Text(str(run["message"])))
    out.print(_map_table(run))
    if drift:
        out.print(Text(f"\ndrift: {_count(totals['differs'])} differ, {_count(totals['missing_on_target'])} missing"
                       f" on target, {_count(totals['missing_on_source'])} missing on source"))
        if items:
            out.print(_drift_table(items))
        if drift > len(items):
            out.print(Text(f"all of it: dualwrite sync drift {run_id} --limit {drift}"))
    _print_sample(out, run)


def _drift_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("map", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("columns", overflow="fold")
    details = any(item.get("detail") for item in items)  # the engine also lists failed rows, with the error
    if details:
        table.add_column("detail", overflow="fold")
    for item in items:
        columns = item.get("columns") or []
        cells = [Text(str(item.get("map") or "")), Text(str(item.get("key") or "")),
                 Text(str(item.get("kind") or "").replace("_", " ")),
                 Text(", ".join(str(c) for c in columns) if isinstance(columns, list) else str(columns))]
        if details:
            cells.append(Text(str(item.get("detail") or "")))
        table.add_row(*cells)
    return table


@app.command()
def drift(
    ctx: typer.Context,
    run_id: RunId,
    map_name: Annotated[str | None, typer.Option("--map", metavar="MAP", show_default=False,
                                                 help="only this map's rows")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 100,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
) -> None:
    """The rows a reconciliation run found different or missing, with the columns that differ."""
    with _api(ctx, url, key) as api:
        items = api.drift(run_id, map_name=map_name, limit=limit)
    if as_json:
        _print_json({"items": items})
        return
    out = _console()
    if not items:
        out.print(Text(f"no drift in run {run_id}" + (f" for map {map_name}" if map_name else "")))
        return
    out.print(_drift_table(items))
    if len(items) >= limit:
        out.print(Text(f"(first {limit}; more with --limit)"))


@app.command()
def cancel(ctx: typer.Context, run_id: RunId, url: Url = None, key: Key = None) -> None:
    """Ask the engine to cancel a run (rows already written stay written)."""
    with _api(ctx, url, key) as api:
        run = api.cancel(run_id)
    status = run.get("status")
    note = "" if status in TERMINAL else " (cancel requested)"
    _console().print(Text(f"run {run.get('id') or run_id}: {status}{note}"))
