"""`dualwrite maps ...`: validate map files, print the sync order, keep the JSON Schema current; show a map's
mode and pause, resume, stop or start it; show a running map, change it (a stored revision that beats its file),
list and restore its revisions.

The mode and revision commands are clients of the engine's management API (`/api/manage/v1/modes`,
`/api/manage/v1/maps`), like `dualwrite sync`; the others read map files only.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TextIO

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
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
    WaitTimedOut,
    connect,
    poll,
    print_json,
    seams_of,
    segment,
    stream_console,
    wait_console,
    when,
)
from core.connectors import jsonwire
from core.connectors.metadata import MetadataError, fetch_dataverse_schemas, fetch_fno_schemas
from core.maps import LoadedMap, Problem, check_metadata, load_maps, plan_sync, set_problems
from core.maps.loader import SCHEMA_FILE_NAME
from core.maps.schema import map_json_schema_text
from core.sync.modes import LABELS

DEFAULT_PATHS = ["maps"]

app = typer.Typer(
    name="maps", no_args_is_help=True,
    help="Table maps: validate, sync order, JSON Schema; a map's mode: status, pause, resume, stop, start; "
         "maps changed through the API: show, put, versions, restore.",
)

Paths = Annotated[
    list[str] | None, typer.Argument(metavar="PATHS", help="map files or folders (default: maps)", show_default=False)
]


def _write(line: str, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(line + "\n")


def _report(problems: list[Problem]) -> int:
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        _write(str(problem), sys.stderr if problem.severity == "error" else sys.stdout)
    return len(errors)


@app.command()
def validate(
    paths: Paths = None,
    dataverse_url: Annotated[
        str | None, typer.Option(help="also check against this Dataverse environment's metadata")
    ] = None,
    fno_url: Annotated[str | None, typer.Option(help="also check against this F&O environment's $metadata")] = None,
    token: Annotated[str | None, typer.Option(help="bearer token for both (or DUALWRITE_TOKEN)")] = None,
    dataverse_token: Annotated[
        str | None, typer.Option(help="bearer token for Dataverse (or DUALWRITE_DATAVERSE_TOKEN)")
    ] = None,
    fno_token: Annotated[str | None, typer.Option(help="bearer token for F&O (or DUALWRITE_FNO_TOKEN)")] = None,
) -> None:
    """Check map files; non-zero exit on any error."""
    paths = paths or DEFAULT_PATHS
    result = load_maps(paths)
    if not result.maps and not result.problems:
        _write(f"no map files in {' '.join(paths)}", sys.stderr)
        raise typer.Exit(2)
    problems = set_problems(result)
    if dataverse_url or fno_url:
        shared = token or os.environ.get("DUALWRITE_TOKEN")
        try:
            problems += asyncio.run(_live_problems(
                result.maps,
                dataverse_url=dataverse_url,
                fno_url=fno_url,
                dataverse_token=dataverse_token or os.environ.get("DUALWRITE_DATAVERSE_TOKEN") or shared,
                fno_token=fno_token or os.environ.get("DUALWRITE_FNO_TOKEN") or shared,
            ))
        except MetadataError as error:
            _write(f"cannot read live metadata: {error}", sys.stderr)
            raise typer.Exit(2) from None
    errors = _report(problems)
    checked = f"{len(result.maps)} map(s)" + (" against live metadata" if dataverse_url or fno_url else "")
    if errors:
        _write(f"{errors} error(s) in {checked}", sys.stderr)
        raise typer.Exit(1)
    _write(f"ok: {checked}")


async def _live_problems(
    loaded: list[LoadedMap],
    *,
    dataverse_url: str | None,
    fno_url: str | None,
    dataverse_token: str | None,
    fno_token: str | None,
) -> list[Problem]:
    async with httpx.AsyncClient(timeout=60) as client:
        dataverse = fno = None
        if dataverse_url:
            tables = {item.map.dataverse.table for item in loaded}
            dataverse = await fetch_dataverse_schemas(client, dataverse_url, tables, dataverse_token)
        if fno_url:
            fno = await fetch_fno_schemas(client, fno_url, fno_token)
    return check_metadata(loaded, fno=fno, dataverse=dataverse)


@app.command()
def order(paths: Paths = None) -> None:
    """Print the dependency order and how cycles are broken."""
    result = load_maps(paths or DEFAULT_PATHS)
    problems = set_problems(result)
    if _report(problems):
        raise typer.Exit(1)
    plan = plan_sync([item.map for item in result.maps])
    for line in plan.describe():
        _write(line)
    for cycle in plan.cycles:
        _write(f"cycle: {' -> '.join([*cycle, cycle[0]])}")


@app.command(help=f"Write (or --check) maps/{SCHEMA_FILE_NAME} from the model.")
def schema(
    output: Annotated[str, typer.Option(help="the file to write or check")] = f"maps/{SCHEMA_FILE_NAME}",
    check: Annotated[bool, typer.Option("--check", help="fail if the file is not up to date")] = False,
) -> None:
    path = Path(output)
    text = map_json_schema_text()
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _write(f"{path} is out of date: run `dualwrite maps schema`", sys.stderr)
            raise typer.Exit(1)
        _write(f"{path} is up to date")
        return
    path.write_text(text, encoding="utf-8")
    _write(f"wrote {path}")


# --- map modes, through the management API -------------------------------------------------------------

RESUME_EXIT_CODES_HELP = (
    "Exit codes: 0 the map moved (with --wait: it runs again); 1 the engine refused or answered with an error, "
    "or, with --wait, the map left catching up for another mode than running or --timeout went by (the catch-up "
    "goes on); 2 usage error; 130 Ctrl-C stopped the waiting (the catch-up goes on)."
)


class ModesApi(ManagementApi):
    """The maps' modes: GET /modes, GET /modes/{map}, POST /modes/{map}/{action}."""

    def views(self) -> dict[str, Any]:
        return dict(self.call("GET", "/modes"))

    def view(self, map_name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/modes/{segment(map_name)}"))

    def act(self, map_name: str, action: str, reason: str | None) -> dict[str, Any]:
        body = None if reason is None else {"reason": reason}
        return dict(self.call("POST", f"/modes/{segment(map_name)}/{action}", body=body))


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _part(view: dict[str, Any], name: str) -> dict[str, Any]:
    """An object inside the view (`parked`, `catch_up`); empty when it is missing."""
    value = view.get(name)
    return value if isinstance(value, dict) else {}


_LABELS: dict[str, str] = {str(mode): label for mode, label in LABELS.items()}


def _label(mode: object) -> str:
    """A mode as people read it: `catching up` for catching_up."""
    return _LABELS.get(mode, mode) if isinstance(mode, str) else ""


def _parked(view: dict[str, Any]) -> tuple[int, int]:
    parked = _part(view, "parked")
    return _int(parked.get("records")), _int(parked.get("changes"))


def _catch_up(view: dict[str, Any]) -> str:
    """`sent/parked at resume, N left, rate/s` of the catch-up under way (or `…, done <when>` of the last one)."""
    progress = _part(view, "catch_up")
    if not progress:
        return ""
    text = f"{_int(progress.get('sent')):,}/{_int(progress.get('parked_at_resume')):,}"
    if progress.get("finished_at"):
        return f"{text}, done {when(progress.get('finished_at'))}"
    text += f", {_int(progress.get('left')):,} left"
    rate = progress.get("rate_per_s")
    return text + (f", {rate:,.1f}/s" if isinstance(rate, int | float) else "")


def _mode_line(view: dict[str, Any]) -> Text:
    """`customers: paused since … by alice: nightly load`."""
    line = f"{view.get('map')}: {view.get('label') or _label(view.get('mode'))}"
    line += f" since {when(view.get('since'))}" if view.get("since") else ""
    line += f" by {view.get('by')}" if view.get("by") else ""
    line += f": {view.get('reason')}" if view.get("reason") else ""
    return Text(line)


def _print_view(out: Console, view: dict[str, Any]) -> None:
    out.print(_mode_line(view))
    records, changes = _parked(view)
    if records or changes or view.get("mode") in ("paused", "catching_up", "error"):
        out.print(Text(f"parked: {records:,} record(s), {changes:,} change(s)"))
    if view.get("catch_up"):
        out.print(Text(f"catch-up: {_catch_up(view)}"))


def _modes_table(views: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("map", "mode", "since", "by", "reason", "parked records", "parked changes", "catch-up"):
        numeric = name.startswith("parked")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name != "reason", overflow="fold")
    for view in views:
        records, changes = _parked(view)
        table.add_row(Text(str(view.get("map") or "")), Text(str(view.get("label") or _label(view.get("mode")))),
                      when(view.get("since")), Text(str(view.get("by") or "")), Text(str(view.get("reason") or "")),
                      f"{records:,}", f"{changes:,}", _catch_up(view))
    return table


def _transitions_table(transitions: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("at", "from", "to", "by", "reason"):
        table.add_column(name, no_wrap=name != "reason", overflow="fold")
    for item in transitions:
        table.add_row(when(item.get("at")), _label(item.get("from")), _label(item.get("to")),
                      Text(str(item.get("by") or "")), Text(str(item.get("reason") or "")))
    return table


MapName = Annotated[str, typer.Argument(metavar="MAP", help="the map's name", show_default=False)]
Reason = Annotated[str | None, typer.Option("--reason", show_default=False,
                                            help="why, recorded with the move and shown in status")]


@app.command()
def status(
    ctx: typer.Context,
    map_name: Annotated[str | None, typer.Argument(
        metavar="MAP", show_default=False, help="one map, with its recorded moves (default: every map)")] = None,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Every map's mode, since when, by whom and why, its parked records and catch-up; or one MAP's moves."""
    with connect(ctx, url, key, ModesApi, profile) as api:
        data = api.view(map_name) if map_name else api.views()
    if as_json:
        print_json(data)
        return
    out = stream_console()
    if not map_name:
        views = [v for v in data.get("maps") or [] if isinstance(v, dict)]
        out.print(_modes_table(views) if views else Text("no maps"))
        return
    _print_view(out, data)
    transitions = [t for t in data.get("transitions") or [] if isinstance(t, dict)]
    if transitions:
        out.print(Text("\nmoves, newest first"))
        out.print(_transitions_table(transitions))
    else:
        out.print(Text("no recorded moves (a map nobody moved is running)"))


def _act(ctx: typer.Context, action: str, map_name: str, reason: str | None, as_json: bool, url: str | None,
         key: str | None, profile: str | None) -> None:
    with connect(ctx, url, key, ModesApi, profile) as api:
        view = api.act(map_name, action, reason)
    if as_json:
        print_json(view)
        return
    out = stream_console()
    _print_view(out, view)
    if action == "stop":
        out.print(Text(f"changes of {map_name} are dropped until: dualwrite maps start {map_name}"))
    elif action == "pause":
        out.print(Text(f"changes of {map_name} are parked until: dualwrite maps resume {map_name}"))


def _action(action: str, summary: str) -> None:
    """Register `dualwrite maps ACTION MAP`: one move of the map's mode, nothing else to it."""

    def command(ctx: typer.Context, map_name: MapName, reason: Reason = None, as_json: AsJson = False,
                url: Url = None, key: Key = None, profile: ProfileName = None) -> None:
        _act(ctx, action, map_name, reason, as_json, url, key, profile)

    command.__doc__ = summary
    app.command(name=action)(command)


_action("pause", "Pause MAP: its changes are parked (latest per record and side) until it is resumed.")


@app.command(epilog=RESUME_EXIT_CODES_HELP)
def resume(
    ctx: typer.Context,
    map_name: MapName,
    reason: Reason = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the catch-up until the map runs again")] = False,
    timeout: Annotated[float, typer.Option(
        min=0, help="with --wait: give up waiting after this many seconds (the catch-up goes on)")] = 600.0,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Resume MAP: it catches up (its parked changes are sent to apply, in rounds), then runs again.

    With --wait, follows the catch-up (sent, left, rate) until the map runs again.
    """
    seams = seams_of(ctx)
    err = stream_console(stderr=True)
    with connect(ctx, url, key, ModesApi, profile) as api:
        view = api.act(map_name, "resume", reason)
        if not wait:
            if as_json:
                print_json(view)
                return
            _print_view(stream_console(), view)
            if view.get("mode") == "catching_up":
                stream_console().print(Text(f"follow it with: dualwrite maps status {map_name}"))
            return
        err.print(_mode_line(view))
        try:
            view = _follow_catch_up(api, map_name, view, seams, timeout)
        except WaitTimedOut as late:
            last = late.last if isinstance(late.last, dict) else view
            err.print(Text(f"{map_name} is still {_label(last.get('mode'))} after {timeout:g} s"
                           f" ({_catch_up(last) or 'no progress yet'}); the catch-up goes on. "
                           f"See it with: dualwrite maps status {map_name}"))
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            err.print(Text(f"stopped waiting; the catch-up of {map_name} goes on. "
                           f"See it with: dualwrite maps status {map_name}"))
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        print_json(view)
    else:
        _print_view(stream_console(), view)
    if view.get("mode") != "running":
        err.print(Text(f"{map_name} did not run again: its mode is now {_label(view.get('mode'))}"
                       + (f" ({view.get('reason')})" if view.get("reason") else "")))
        raise typer.Exit(EXIT_FAILED)


_action("stop", "Stop MAP: its changes are dropped on purpose (each one logged as skipped) until it is started.")
_action("start", "Start MAP (stopped or not started): its changes are applied live from now on.")


class _CatchUpBar(BarsReporter):
    """A rich progress bar of the catch-up, for a terminal."""

    def __init__(self, console: Console) -> None:
        super().__init__(Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                  TextColumn("{task.fields[figures]}", markup=False), console=console,
                                  transient=True))
        self.task: TaskID | None = None

    def update(self, view: dict[str, Any]) -> None:
        progress = _part(view, "catch_up")
        sent = _int(progress.get("sent"))
        total = max(_int(progress.get("parked_at_resume")), sent + _int(progress.get("left")), 1)
        description = f"{view.get('map')}: {_label(view.get('mode'))}"
        if self.task is None:
            self.task = self.progress.add_task(description, total=total, completed=sent, figures=_catch_up(view))
        else:
            self.progress.update(self.task, description=description, total=total, completed=sent,
                                 figures=_catch_up(view))
        self.progress.refresh()


class _CatchUpLines(Reporter):
    """Plain lines for logs (no terminal): the mode when it changes, the progress every PLAIN_EVERY_S."""

    def __init__(self, console: Console, seams: Seams) -> None:
        self.console, self.clock = console, seams.clock
        self.seen: tuple[str, str, float] | None = None

    def update(self, view: dict[str, Any]) -> None:
        mode, figures, now = str(view.get("mode")), _catch_up(view), self.clock()
        if self.seen and self.seen[0] == mode and (self.seen[1] == figures or now - self.seen[2] < PLAIN_EVERY_S):
            return
        self.seen = (mode, figures, now)
        self.console.print(Text(f"{view.get('map')}: {_label(mode)}" + (f", catch-up {figures}" if figures else "")))


def _follow_catch_up(api: ModesApi, map_name: str, view: dict[str, Any], seams: Seams,
                     timeout: float) -> dict[str, Any]:
    """Poll the map until it is no longer catching up (running again, or moved elsewhere), showing the progress."""
    console, interactive = wait_console(seams)
    reporter: Reporter = _CatchUpBar(console) if interactive else _CatchUpLines(console, seams)
    with reporter:
        return poll(view, lambda: api.view(map_name), lambda current: current.get("mode") != "catching_up", seams,
                    report=reporter.update, timeout=timeout)



# --- maps changed through the management API, stored with a revision number ------------------------------


class MapsApi(ManagementApi):
    """Maps changed through the API: GET and PUT /maps/{map}, GET /maps/{map}/versions, POST .../{rev}/restore.
    Answers are read `exact`: a definition's decimals keep every digit."""

    def show(self, map_name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/maps/{segment(map_name)}", exact=True))

    def put(self, map_name: str, text: bytes, reason: str | None) -> dict[str, Any]:
        return dict(self.call("PUT", f"/maps/{segment(map_name)}", content=text, params=_reason(reason), exact=True))

    def versions(self, map_name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/maps/{segment(map_name)}/versions", exact=True))

    def restore(self, map_name: str, revision: int, reason: str | None) -> dict[str, Any]:
        return dict(self.call("POST", f"/maps/{segment(map_name)}/versions/{revision}/restore",
                              params=_reason(reason), exact=True))

    def check(self, map_name: str, text: bytes) -> dict[str, Any]:
        return dict(self.call("POST", f"/maps/{segment(map_name)}/validate", content=text, exact=True))

    def preview(self, map_name: str, body: bytes) -> dict[str, Any]:
        return dict(self.call("POST", f"/maps/{segment(map_name)}/preview", content=body, exact=True))


ChangeReason = Annotated[str | None, typer.Option("--reason", show_default=False,
                                                  help="why, recorded with the revision and shown in versions")]


def _reason(reason: str | None) -> dict[str, Any] | None:
    # a query parameter rather than the x-dualwrite-reason header: headers cannot carry every character
    return {"reason": reason} if reason else None


def _origin(answer: dict[str, Any]) -> str:
    revision = answer.get("revision")
    return f"stored revision {revision}" if isinstance(revision, int) else f"file {answer.get('origin')}"


def _problems_table(problems: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("map", "field", "problem", "in"):
        table.add_column(name, no_wrap=name != "problem", overflow="fold")
    for item in problems:
        table.add_row(Text(str(item.get("map") or "")), Text(str(item.get("field") or "")),
                      Text(str(item.get("message") or "")), Text(str(item.get("origin") or "")))
    return table


def _stored(ctx: typer.Context, url: str | None, key: str | None, profile: str | None, as_json: bool,
            store: Callable[[MapsApi], dict[str, Any]]) -> None:
    """Run a PUT or restore and print the revision stored; a refused map prints its problems and exits 1."""
    err = stream_console(stderr=True)
    with connect(ctx, url, key, MapsApi, profile) as api:
        try:
            answer = store(api)
        except ApiError as error:
            problems = [p for p in (error.problem or {}).get("problems") or [] if isinstance(p, dict)]
            if not problems:
                raise
            if as_json:
                print_json(error.problem)
            else:
                err.print(Text(str(error)))
                err.print(_problems_table(problems))
            raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        print_json(answer)
        return
    stream_console().print(Text(
        f"{answer.get('map')}: stored as revision {answer.get('revision')} (version {answer.get('version')}); it runs "
        f"on every instance within {answer.get('takes_effect_within_seconds')} s"))
    if answer.get("maps_problem"):
        err.print(Text(f"but the maps do not load: {answer['maps_problem']}"))


@app.command()
def show(ctx: typer.Context, map_name: MapName, as_json: AsJson = False, url: Url = None, key: Key = None,
         profile: ProfileName = None) -> None:
    """Print the running definition of MAP (JSON, ready to edit and send back with `dualwrite maps put`); where it
    comes from (its file or stored revision) goes to stderr."""
    with connect(ctx, url, key, MapsApi, profile) as api:
        answer = api.show(map_name)
    if as_json:
        print_json(answer)
        return
    latest = answer.get("latest_revision")
    note = f", latest stored revision {latest}" if latest and latest != answer.get("revision") else ""
    stream_console(stderr=True).print(Text(
        f"{answer.get('name')}: version {answer.get('version')}, {_origin(answer)}{note}, loaded "
        f"{when(answer.get('loaded_at'))}"))
    print_json(answer.get("definition"))


@app.command()
def put(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False, help="the map's JSON file")],
    reason: ChangeReason = None,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Store FILE as the next revision of the map it names: it beats the map's file and runs on every instance
    within 30 s. Refused (exit 1, each problem listed, nothing stored) when the maps with it would not validate."""
    text, _, name = _map_file(file)
    _stored(ctx, url, key, profile, as_json, lambda api: api.put(name, text, reason))


@app.command()
def versions(ctx: typer.Context, map_name: MapName, as_json: AsJson = False, url: Url = None,
             key: Key = None, profile: ProfileName = None) -> None:
    """The stored revisions of MAP, newest first, and which one runs."""
    with connect(ctx, url, key, MapsApi, profile) as api:
        answer = api.versions(map_name)
    if as_json:
        print_json(answer)
        return
    out = stream_console()
    running = answer.get("running_revision")
    out.print(Text(f"{map_name} runs " + (f"stored revision {running}" if isinstance(running, int)
                                           else f"its file {answer.get('origin') or ''}".rstrip())))
    items = [v for v in answer.get("versions") or [] if isinstance(v, dict)]
    if not items:
        out.print(Text("no stored revisions"))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("revision", "version", "at", "by", "reason", ""):
        table.add_column(name, justify="right" if name == "revision" else "left", no_wrap=name != "reason",
                         overflow="fold")
    for item in items:
        table.add_row(str(item.get("revision")), Text(str(item.get("version") or "")), when(item.get("at")),
                      Text(str(item.get("by") or "")), Text(str(item.get("reason") or "")),
                      "running" if item.get("revision") == running else "")
    out.print(table)


@app.command()
def restore(
    ctx: typer.Context,
    map_name: MapName,
    revision: Annotated[int, typer.Argument(metavar="REVISION", min=1, show_default=False,
                                            help="the stored revision to bring back")],
    reason: ChangeReason = None,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Store REVISION's body again as the next revision of MAP (validated as a put is)."""
    _stored(ctx, url, key, profile, as_json, lambda api: api.restore(map_name, revision, reason))


def _map_file(file: Path) -> tuple[bytes, Any, str]:
    """A map file's bytes, its JSON (decimals exact) and the map's name; a usage error naming FILE otherwise."""
    try:
        text = file.read_bytes()
        definition = jsonwire.loads(text)
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"{file}: {error}", param_hint="FILE") from None
    name = definition.get("name") if isinstance(definition, dict) else None
    if not isinstance(name, str) or not name:
        raise typer.BadParameter(f"{file}: not a map (it has no \"name\")", param_hint="FILE")
    return text, definition, name


@app.command()
def check(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", show_default=False, help="a draft of a map (JSON)")],
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Check FILE against the running engine, as `put` would (with the maps that run there), storing nothing:
    every problem listed; exit 1 when it would be refused."""
    text, _, name = _map_file(file)
    with connect(ctx, url, key, MapsApi, profile) as api:
        answer = api.check(name, text)
    if as_json:
        print_json(answer)
    else:
        problems = [p for p in answer.get("problems") or [] if isinstance(p, dict)]
        verdict = "would be accepted" if answer.get("valid") else "would be refused"
        stream_console().print(Text(f"{name}: {verdict} ({len(problems)} problem(s))"))
        if problems:
            stream_console().print(_problems_table(problems))
    if not answer.get("valid"):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def preview(
    ctx: typer.Context,
    map_name: MapName,
    record: Annotated[Path, typer.Argument(metavar="RECORD", show_default=False,
                                           help="a sample record read on the source side (JSON object)")],
    to: Annotated[str, typer.Option("--to", help="the side written: fno or dataverse")] = "fno",
    draft: Annotated[Path | None, typer.Option("--draft", show_default=False,
                                               help="preview this draft of the map instead of the running one")]
    = None,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """The values MAP (or --draft) would write to --to for the sample RECORD; nothing is read or written."""
    if to not in ("fno", "dataverse"):
        raise typer.BadParameter("fno or dataverse", param_hint="--to")
    try:
        sample = jsonwire.loads(record.read_bytes())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"{record}: {error}", param_hint="RECORD") from None
    body: dict[str, Any] = {"direction": f"to_{to}", "record": sample}
    if draft is not None:
        body["definition"] = _map_file(draft)[1]
    with connect(ctx, url, key, MapsApi, profile) as api:
        answer = api.preview(map_name, jsonwire.dumps(body))
    print_json(answer.get("values"))


# --- scenario bundles --------------------------------------------------------------------------------------


class ScenariosApi(ManagementApi):
    """The scenario bundles over the running maps: GET /scenarios."""

    def list(self) -> dict[str, Any]:
        return dict(self.call("GET", "/scenarios"))


@app.command()
def scenarios(ctx: typer.Context, as_json: AsJson = False, url: Url = None, key: Key = None,
              profile: ProfileName = None) -> None:
    """The scenario bundles (maps/scenarios/scenarios.json): each one's maps in initial-sync order, the disabled
    ones marked. `dualwrite sync start --scenario NAME` runs a scenario's maps. Exit 1 when the engine finds
    the scenarios file does not fit its maps."""
    with connect(ctx, url, key, ScenariosApi, profile) as api:
        answer = api.list()
    if as_json:
        print_json(answer)
    else:
        out = stream_console()
        items = [s for s in answer.get("scenarios") or [] if isinstance(s, dict)]
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in ("scenario", "title", "maps (initial-sync order; * disabled)"):
            table.add_column(name, overflow="fold")
        for item in items:
            disabled = set(item.get("disabled") or [])
            maps = ", ".join(f"{m}*" if m in disabled else str(m) for m in item.get("maps") or [])
            table.add_row(Text(str(item.get("name"))), Text(str(item.get("title") or "")), Text(maps))
        if items:
            out.print(table)
        elif not answer.get("problem"):
            out.print(Text("no scenarios"))
    if answer.get("problem"):
        _write(f"scenarios: {answer['problem']}", sys.stderr)
        raise typer.Exit(EXIT_FAILED)


@app.command("enable-scenario")
def enable_scenario(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="SCENARIO", help="a scenario of `dualwrite maps scenarios`")],
    reason: ChangeReason = None,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Turn on the disabled maps of SCENARIO (and of the scenarios it requires), in its dependency order: each is
    stored as its next revision with `"enabled": true` (like `dualwrite maps put`), so it runs on every instance
    within 30 s and deployment registers its webhook steps and F&O events. Stops at the first map refused (exit 1,
    its problems listed); the maps stored before it stay on."""
    out, err = stream_console(), stream_console(stderr=True)
    with connect(ctx, url, key, ScenariosApi, profile) as api:
        answer = api.list()
    if answer.get("problem"):
        err.print(Text(f"scenarios: {answer['problem']}"))
        raise typer.Exit(EXIT_FAILED)
    found = next((s for s in answer.get("scenarios") or [] if isinstance(s, dict) and s.get("name") == name), None)
    if found is None:
        known = ", ".join(str(s.get("name")) for s in answer.get("scenarios") or [] if isinstance(s, dict))
        ctx.fail(f"unknown scenario {name!r} (known: {known or 'none'})")
    disabled = [str(m) for m in found.get("disabled") or []]
    if not disabled:
        out.print(Text(f"{name}: every map is enabled already ({', '.join(found.get('maps') or [])})"))
        return
    why = reason or f"enable scenario {name}"
    for map_name in disabled:
        def store(maps: MapsApi, map_name: str = map_name) -> dict[str, Any]:
            definition = dict(maps.show(map_name).get("definition") or {})
            definition["enabled"] = True
            return maps.put(map_name, jsonwire.dumps(definition), why)

        _stored(ctx, url, key, profile, False, store)
