"""`dualwrite sync ...`: start, follow, list and cancel initial-sync and reconciliation runs.

A client of the engine's management API (`/api/manage/v1/sync`), over HTTP with httpx; nothing
here touches the stores. With no flags it talks to the local stack of `make run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PLAIN_EVERY_S,
    ApiError,
    AsJson,
    BarsReporter,
    Key,
    ManagementApi,
    ProfileName,
    Reporter,
    Seams,
    Url,
    connect,
    poll,
    print_json,
    seams_of,
    segment,
    stream_console,
    wait_console,
    when,
)
from core.cli.maps import ScenariosApi

TERMINAL = frozenset({"completed", "failed", "cancelled"})
EXIT_ROWS = 3  # the run completed, but rows failed or a compare found drift

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


# --- the management API ---------------------------------------------------------------------------------


class SyncApi(ManagementApi):
    """The sync runs of the management API."""

    PREFIX = ManagementApi.PREFIX + "/sync"

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.call("POST", "/runs", body=body))

    def runs(self) -> dict[str, Any]:
        return dict(self.call("GET", "/runs"))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/runs/{segment(run_id)}"))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/runs/{segment(run_id)}/cancel"))

    def drift(self, run_id: str, *, map_name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if map_name:
            params["map"] = map_name
        return list(self.call("GET", f"/runs/{segment(run_id)}/drift", params=params).get("items") or [])


# --- output ---------------------------------------------------------------------------------------------


def _n(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value) if isinstance(value, int | float) else 0


def _count(value: int) -> str:
    return f"{value:,}"


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


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
    line += f" · started {when(started)}" if started else ""
    line += f" · finished {when(finished)}" if finished else ""
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


class _Bars(BarsReporter):
    """One rich progress bar per map, for a terminal."""

    def __init__(self, console: Console, kind: str) -> None:
        self.kind = kind
        super().__init__(Progress(
            TextColumn("{task.description}", markup=False),
            TextColumn("{task.fields[status]}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[count]}", markup=False),
            TextColumn("{task.fields[figures]}", markup=False),
            TextColumn("{task.fields[rate]}", markup=False),
            TextColumn("{task.fields[eta]}", markup=False),
            console=console,
            transient=True,  # the summary table printed after the run replaces the bars
        ))
        self.tasks: dict[str, TaskID] = {}

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


class _Lines(Reporter):
    """Plain lines for logs (no terminal): a map's state when it changes, its figures every PLAIN_EVERY_S."""

    def __init__(self, console: Console, kind: str, clock: Callable[[], float]) -> None:
        self.console, self.kind, self.clock = console, kind, clock
        self.status: str | None = None
        self.seen: dict[str, tuple[str, tuple[int, ...], float]] = {}

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
    console, interactive = wait_console(seams)
    kind = str(run.get("kind") or "initial")
    reporter: Reporter = _Bars(console, kind) if interactive else _Lines(console, kind, seams.clock)
    run_id = str(run["id"])
    with reporter:
        return poll(run, lambda: api.run(run_id), lambda current: current.get("status") in TERMINAL, seams,
                    report=reporter.update)


def _start_and_follow(ctx: typer.Context, body: dict[str, Any], no_wait: bool, url: str | None,
                      key: str | None, profile: str | None) -> None:
    seams = seams_of(ctx)
    out, err = stream_console(), stream_console(stderr=True)
    with connect(ctx, url, key, SyncApi, profile) as api:
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


def _scenario_maps(ctx: typer.Context, name: str, url: str | None, key: str | None,
                   profile: str | None) -> list[str]:
    """A scenario's maps in dependency order, as the engine expands it (GET /scenarios)."""
    with connect(ctx, url, key, ScenariosApi, profile) as api:
        answer = api.list()
    if answer.get("problem"):
        raise ApiError(f"scenarios: {answer['problem']}")
    found = next((s for s in answer.get("scenarios") or [] if isinstance(s, dict) and s.get("name") == name), None)
    if found is None:
        known = ", ".join(str(s.get("name")) for s in answer.get("scenarios") or [] if isinstance(s, dict))
        ctx.fail(f"unknown scenario {name!r} (known: {known or 'none'})")
    disabled = [str(m) for m in found.get("disabled") or []]
    if disabled:
        stream_console(stderr=True).print(Text(
            f"note: {', '.join(disabled)} {'is' if len(disabled) == 1 else 'are'} disabled: copied once, not kept in "
            f"sync; turn them on with: dualwrite maps enable-scenario {name}"))
    return [str(m) for m in found.get("maps") or []]


# --- the commands ---------------------------------------------------------------------------------------

Maps = Annotated[list[str] | None, typer.Argument(
    metavar="MAP", show_default=False, help="map names; the engine runs them in dependency order")]
All = Annotated[bool, typer.Option("--all", help="every enabled map, in dependency order")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="start the run and return; do not follow it")]
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
    scenario: Annotated[str | None, typer.Option(
        "--scenario", metavar="NAME", show_default=False,
        help="the maps of a scenario bundle (see `dualwrite maps scenarios`), in its dependency order")] = None,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Copy existing rows to the other side: give MAP names, --scenario or --all.

    Unless --no-wait, follows the run with a progress bar per map until it ends (Ctrl-C stops following, not the run).
    """
    if scenario:
        if all_maps:
            ctx.fail("give --scenario or --all, not both")
        maps = [*_scenario_maps(ctx, scenario, url, key, profile), *(maps or [])]
    body = {
        "kind": "initial",
        "maps": _selection(ctx, maps, all_maps, required=retry_failed is None),
        "source": source.value if source else None,
        "dry_run": dry_run,
        "retry_failed_of": retry_failed,
    }
    _start_and_follow(ctx, body, no_wait, url, key, profile)


@app.command(epilog=EXIT_CODES_HELP)
def reconcile(
    ctx: typer.Context,
    maps: Maps = None,
    all_maps: All = False,
    repair: Annotated[bool, typer.Option("--repair", help="also write the source's values where they differ")] = False,
    no_wait: NoWait = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
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
    _start_and_follow(ctx, body, no_wait, url, key, profile)


@app.command()
def runs(ctx: typer.Context, as_json: AsJson = False, url: Url = None, key: Key = None,
         profile: ProfileName = None) -> None:
    """List the sync runs, newest first."""
    with connect(ctx, url, key, SyncApi, profile) as api:
        data = api.runs()
    if as_json:
        print_json(data)
        return
    items = [r for r in data.get("runs") or [] if isinstance(r, dict)]
    out = stream_console()
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
                      when(run.get("created_at")), when(run.get("finished_at")))
    out.print(table)


@app.command()
def show(ctx: typer.Context, run_id: RunId, as_json: AsJson = False, url: Url = None, key: Key = None,
         profile: ProfileName = None) -> None:
    """One run: its maps' progress and figures, and a summary of the drift it found."""
    with connect(ctx, url, key, SyncApi, profile) as api:
        run = api.run(run_id)
        totals = _totals(run)
        drift = totals["differs"] + totals["missing_on_target"] + totals["missing_on_source"]
        items = api.drift(run_id, limit=10) if drift and not as_json else []
    if as_json:
        print_json(run)
        return
    out = stream_console()
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
    profile: ProfileName = None,
) -> None:
    """The rows a reconciliation run found different or missing, with the columns that differ."""
    with connect(ctx, url, key, SyncApi, profile) as api:
        items = api.drift(run_id, map_name=map_name, limit=limit)
    if as_json:
        print_json({"items": items})
        return
    out = stream_console()
    if not items:
        out.print(Text(f"no drift in run {run_id}" + (f" for map {map_name}" if map_name else "")))
        return
    out.print(_drift_table(items))
    if len(items) >= limit:
        out.print(Text(f"(first {limit}; more with --limit)"))


@app.command()
def cancel(ctx: typer.Context, run_id: RunId, url: Url = None, key: Key = None,
         profile: ProfileName = None) -> None:
    """Ask the engine to cancel a run (rows already written stay written)."""
    with connect(ctx, url, key, SyncApi, profile) as api:
        run = api.cancel(run_id)
    status = run.get("status")
    note = "" if status in TERMINAL else " (cancel requested)"
    stream_console().print(Text(f"run {run.get('id') or run_id}: {status}{note}"))
