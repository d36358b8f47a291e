"""`dualwrite activity ...`: what happened to each change per map (applied, skipped, parked, retrying, failed),
listed with filters or followed as it happens.

A client of `GET /api/manage/v1/activity` (`?map=&key=&since=&until=&outcome=&limit=`, newest first, `since` and
`until` inclusive, the last 24 hours by default). `tail -f` asks again every 2 s from the newest entry it has seen.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    ApiError,
    AsJson,
    ManagementApi,
    ProfileName,
    Seams,
    Url,
    connect,
    print_json,
    seams_of,
    stream_console,
    when,
)

MAX_LIMIT = 1000  # the most the route answers at once
# Entries can be stored a little after the time they carry (a batch's entries go in one transaction once the
# batch is through), so each poll reaches back this far before the newest entry seen, and drops what it has shown.
LOOKBACK = timedelta(seconds=10)
# A poll whose answer is full pages back (`until` = the oldest entry of the answer) at most this many times.
MAX_PAGES = 20

app = typer.Typer(
    name="activity", no_args_is_help=True,
    help="The activity log: one entry per change per map, with its outcome and why; list it or follow it.",
)


class Outcome(StrEnum):
    """The activity log's outcomes (core.sync.domain.OUTCOMES; a test keeps them equal)."""

    applied = "applied"
    skipped = "skipped"
    parked = "parked"
    failed = "failed"
    retrying = "retrying"


class ActivityApi(ManagementApi):
    """GET /activity."""

    def entries(self, filters: dict[str, str], *, since: datetime | None = None, until: datetime | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {**filters, "limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        if until is not None:
            params["until"] = until.isoformat()
        answer = self.call("GET", "/activity", params=params)
        return [e for e in answer.get("entries") or [] if isinstance(e, dict)]


# --- times ----------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime | None:
    """`15m`, `2h`, `1d`, `1h30m` (that long ago) or an ISO 8601 time; one without a zone is local time."""
    if text is None:
        return None
    value = text.strip()
    parts = _DURATION.findall(value)
    if parts and "".join(number + unit for number, unit in parts) == value:
        return now() - sum((timedelta(**{_UNITS[unit]: float(number)}) for number, unit in parts), timedelta())
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give a time ago such as 15m, 2h, 1d, 1h30m, or an ISO 8601 time such as "
            "2024-05-01T10:00:00Z") from None
    return moment if moment.tzinfo else moment.astimezone()


def _at(entry: dict[str, Any]) -> datetime | None:
    value = entry.get("at")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- output ---------------------------------------------------------------------------------------------


def _latency(entry: dict[str, Any]) -> str:
    value = entry.get("latency_ms")
    return f"{value:,.0f} ms" if isinstance(value, int | float) else ""


def _change(entry: dict[str, Any]) -> str:
    return " ".join(str(entry.get(name)) for name in ("source", "operation") if entry.get(name))


def _table(entries: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("at", "map", "key", "change", "outcome", "latency", "reason"):
        table.add_column(name, justify="right" if name == "latency" else "left", no_wrap=name != "reason",
                         overflow="fold")
    for entry in entries:
        table.add_row(when(entry.get("at")), Text(str(entry.get("map") or "")), Text(str(entry.get("key") or "")),
                      Text(_change(entry)), Text(str(entry.get("outcome") or "")), _latency(entry),
                      Text(str(entry.get("reason") or "")))
    return table


def _line(entry: dict[str, Any]) -> Text:
    """One entry as one line, for following: time, map, key, change, outcome, latency, reason."""
    cells = [when(entry.get("at")), f"{entry.get('map') or '':<10}", f"{entry.get('key') or '':<16}",
             f"{_change(entry):<16}", f"{entry.get('outcome') or '':<8}", f"{_latency(entry):>8}",
             str(entry.get("reason") or "")]
    return Text("  ".join(cells).rstrip())


def _json_line(entry: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# --- options --------------------------------------------------------------------------------------------

MapOption = Annotated[str | None, typer.Option("--map", metavar="MAP", show_default=False, help="only this map's")]
KeyOption = Annotated[str | None, typer.Option(
    "--key", metavar="KEY", show_default=False, help="only this record's (its integration key, e.g. USMF|US-001)")]
OutcomeOption = Annotated[Outcome | None, typer.Option(show_default=False, help="only this outcome")]
Since = Annotated[str | None, typer.Option(
    metavar="WHEN", show_default=False,
    help="from then on: a time ago (15m, 2h, 1d) or an ISO 8601 time (default: the last 24 hours)")]
# `--key` names the record here, as on the route; the engine's key is --api-key (which every command takes).
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", show_default=False,
    help="admin (master) key, sent as x-functions-key (default: --profile's, DUALWRITE_KEY, DUALWRITE_PROFILE's or "
         "the default profile's, else the local host's DEVHOST_MASTER_KEY)")]


def _filters(map_name: str | None, record: str | None, outcome: Outcome | None) -> dict[str, str]:
    chosen = {"map": map_name, "key": record, "outcome": outcome.value if outcome else None}
    return {name: value for name, value in chosen.items() if value}


@app.command(name="list")
def list_(
    ctx: typer.Context,
    map_name: MapOption = None,
    record: KeyOption = None,
    outcome: OutcomeOption = None,
    since: Since = None,
    until: Annotated[str | None, typer.Option(metavar="WHEN", show_default=False,
                                              help="up to then (default: now); as --since")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="at most this many, newest first")] = 100,
    as_json: AsJson = False,
    url: Url = None,
    api_key: ApiKey = None,
    profile: ProfileName = None,
) -> None:
    """The activity log, newest first: when, map, record key, change, outcome, latency (applied ones), why."""
    start, end = parse_time(since), parse_time(until)
    with connect(ctx, url, api_key, ActivityApi, profile) as api:
        entries = api.entries(_filters(map_name, record, outcome), since=start, until=end, limit=limit)
    if as_json:
        print_json({"entries": entries})
        return
    out = stream_console()
    if not entries:
        out.print(Text("no activity" + (f" since {when(start.isoformat())}" if start else " in the last 24 hours")
                       + "".join(f", {name} {value}" for name, value in _filters(map_name, record, outcome).items())))
        return
    if not out.is_terminal:  # a log or a pipe: one whole line an entry
        out.width = 1000
    out.print(_table(entries))
    if len(entries) >= limit:
        out.print(Text(f"(the newest {limit}; more with --limit, up to {MAX_LIMIT}, or a narrower --since/--until)"))


# --- tail -----------------------------------------------------------------------------------------------


def _identity(entry: dict[str, Any]) -> str:
    """What tells two entries apart (they have no id): all they say."""
    return json.dumps(entry, sort_keys=True, default=str)


class Follower:
    """New entries since the newest one seen: each poll asks from LOOKBACK before it (entries stored late) up to now,
    pages back while answers are full, and returns, oldest first, what it has not returned before."""

    def __init__(self, api: ActivityApi, filters: dict[str, str], since: datetime | None) -> None:
        self.api, self.filters, self.since = api, filters, since
        self.newest: datetime | None = None
        self.seen: dict[str, datetime] = {}

    def mark(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Remember entries; the ones not seen before, oldest first."""
        fresh = []
        for entry in entries:
            at = _at(entry)
            identity = _identity(entry)
            if at is None or identity in self.seen:
                continue
            self.seen[identity] = at
            fresh.append(entry)
            if self.newest is None or at > self.newest:
                self.newest = at
        if self.newest is not None:
            horizon = self.newest - LOOKBACK
            self.seen = {identity: at for identity, at in self.seen.items() if at >= horizon}
        fresh.sort(key=lambda e: _at(e) or datetime.min.replace(tzinfo=UTC))
        return fresh

    def cursor(self) -> datetime | None:
        if self.newest is None:
            return self.since
        back = self.newest - LOOKBACK
        return back if self.since is None else max(back, self.since)

    def fetch(self) -> list[dict[str, Any]]:
        since, until = self.cursor(), None
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            page = self.api.entries(self.filters, since=since, until=until, limit=MAX_LIMIT)
            found += page
            oldest = min((at for at in map(_at, page) if at is not None), default=None)
            if len(page) < MAX_LIMIT or oldest is None or (until is not None and oldest >= until):
                break
            until = oldest  # inclusive: the entries at that instant come again and are dropped as seen
        return found

    def poll(self) -> list[dict[str, Any]]:
        return self.mark(self.fetch())


@app.command()
def tail(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new entries until Ctrl-C")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, max=MAX_LIMIT,
                                       help="how many of the latest entries to print first")] = 10,
    map_name: MapOption = None,
    record: KeyOption = None,
    outcome: OutcomeOption = None,
    since: Since = None,
    interval: Annotated[float, typer.Option(min=0.1, help="with -f: seconds between two looks")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line (JSON Lines), as the API has it")]
    = False,
    url: Url = None,
    api_key: ApiKey = None,
    profile: ProfileName = None,
) -> None:
    """The latest entries, oldest first; with -f, then every new one as it comes (Ctrl-C ends it)."""
    seams = seams_of(ctx)
    filters = _filters(map_name, record, outcome)
    start = parse_time(since)
    out = stream_console()
    show: Callable[[dict[str, Any]], None] = _json_line if as_json else lambda entry: out.print(_line(entry))
    with connect(ctx, url, api_key, ActivityApi, profile) as api:
        follower = Follower(api, filters, start)
        try:
            latest = api.entries(filters, since=start, limit=max(lines, 1))
            for entry in sorted(latest[:lines], key=lambda e: _at(e) or datetime.min.replace(tzinfo=UTC)):
                show(entry)
            follower.mark(latest)
            if not follow:
                return
            if follower.newest is not None:  # what is already there, back to LOOKBACK before the newest: shown
                follower.mark(follower.fetch())
            _follow(follower, show, seams, interval)
        except KeyboardInterrupt:
            return  # Ctrl-C is how following ends: exit 0, nothing to add


def _follow(follower: Follower, show: Callable[[dict[str, Any]], None], seams: Seams, interval: float) -> None:
    """Poll every `interval` seconds for ever; an engine that does not answer for the moment is waited for."""
    err: Console = stream_console(stderr=True)
    unanswered: ApiError | None = None
    while True:
        seams.sleep(interval)
        try:
            fresh = follower.poll()
        except ApiError as error:
            if not error.transient:
                raise
            if unanswered is None:
                err.print(Text(f"the engine does not answer ({error}); still trying every {interval:g} s"))
            unanswered = error
            continue
        if unanswered is not None:
            err.print(Text("the engine answers again"))
            unanswered = None
        for entry in fresh:
            show(entry)

