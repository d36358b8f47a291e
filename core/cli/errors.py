"""`dualwrite errors ...`: the error log: list it, show an entry whole (the target's full answer and the change),
resubmit or discard entries by id, or every open entry of a map and category at once.

A client of the management API (`/api/manage/v1/errors`). Bulk actions go to `POST .../errors/resubmit` and
`.../errors/discard` with the ids listed and confirmed; an engine without those routes (404/405: older servers)
is served one id at a time through `.../errors/{id}/resubmit|discard`, which every version has.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    EXIT_FAILED,
    ApiError,
    AsJson,
    Key,
    ManagementApi,
    ProfileName,
    Seams,
    Url,
    connect,
    print_json,
    seams_of,
    segment,
    stream_console,
    wait_console,
    when,
)

MAX_LIMIT = 1000  # the most the list route answers at once; a bulk action takes at most this many per run
BULK_IDS = 1000  # ids one bulk request carries at most
# What a 404/405 of the bulk route means: an engine from before it (the local and Azure hosts answer a method or
# route they do not serve with 404).
NO_BULK_ROUTE = (404, 405)

app = typer.Typer(
    name="errors", no_args_is_help=True,
    help="The error log: list, show, resubmit and discard entries, one by one or every open entry of a map and "
         "category at once.",
    epilog="Exit codes: 0 done; 1 the engine refused or answered with an error (for resubmit and discard: any "
           "entry not done), or a bulk action was not confirmed; 2 usage error.",
)


class ErrorsApi(ManagementApi):
    """GET /errors, GET /errors/{id}, POST /errors/{id}/resubmit|discard, POST /errors/resubmit|discard."""

    def listing(self, *, map_name: str | None, status: str, category: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"status": status, "limit": limit}
        if map_name:
            params["map"] = map_name
        if category:
            params["category"] = category
        return dict(self.call("GET", "/errors", params=params))

    def get(self, id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/errors/{segment(id)}"))

    def act(self, id: str, action: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/errors/{segment(id)}/{action}"))

    def bulk(self, action: str, ids: list[str]) -> dict[str, Any] | None:
        """The bulk route's answer for these ids; None when the engine has no bulk route."""
        try:
            return dict(self.call("POST", f"/errors/{action}", body={"ids": ids}))
        except ApiError as error:
            if error.status in NO_BULK_ROUTE:
                return None
            raise


# --- output ---------------------------------------------------------------------------------------------

_TARGET_ANSWER = re.compile(r"^[A-Z]+ \S+ -> (HTTP \d{3}: .*)$")


def short_message(text: object, width: int = 100) -> str:
    """The first line of an error text, without the request's method and URL, cut to `width`."""
    line = next((part.strip() for part in str(text or "").splitlines() if part.strip()), "")
    matched = _TARGET_ANSWER.match(line)
    line = matched.group(1) if matched else line
    return line if len(line) <= width else line[: width - 1] + "…"


def _errors_table(entries: list[dict[str, Any]], with_status: bool, width: int) -> Table:
    """One line an entry when `width` allows: every column whole (ids are copied into show, resubmit, discard) and
    the message cut to what is left; on a narrow console, each column folds instead."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["id", "map", "key", "category", *(["status"] if with_status else []), "attempts", "first", "last"]
    rows = [_cells(entry, with_status) for entry in entries]
    widths = [max([len(row[number]) for row in rows] + [len(name)]) for number, name in enumerate(columns)]
    left = width - sum(widths) - 2 * len(widths)  # a column is padded by one space on each side
    one_line = left >= 12
    for name, longest in zip(columns, widths, strict=True):
        table.add_column(name, justify="right" if name == "attempts" else "left", no_wrap=one_line,
                         min_width=longest if one_line else None, overflow="fold")
    table.add_column("message", no_wrap=one_line, overflow="ellipsis" if one_line else "fold",
                     max_width=left if one_line else None)
    for entry, row in zip(entries, rows, strict=True):
        table.add_row(*[Text(cell) for cell in row], Text(short_message(entry.get("text"))))
    return table


def _cells(entry: dict[str, Any], with_status: bool) -> list[str]:
    names = ["id", "map", "key", "category", *(["status"] if with_status else [])]
    return [*(str(entry.get(name) or "") for name in names), str(entry.get("attempts") or 0),
            when(entry.get("first_at")), when(entry.get("last_at"))]


def _entries(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in answer.get("errors") or [] if isinstance(e, dict)]


def _change_text(change: object) -> str:
    """The change as indented JSON when it is JSON, else as it is."""
    if not isinstance(change, str):
        return json.dumps(change, indent=2, ensure_ascii=False)
    try:
        return json.dumps(json.loads(change), indent=2, ensure_ascii=False)
    except ValueError:
        return change


# --- options --------------------------------------------------------------------------------------------


class Category(StrEnum):
    """The error log's categories (core.sync.domain.CATEGORIES; a test keeps them equal)."""

    application = "application"
    system = "system"
    conflict = "conflict"
    lookup_pending = "lookup_pending"
    throttled = "throttled"


class Status(StrEnum):
    """An entry's status (core.sync.domain.STATUSES; a test keeps them equal), or all of them."""

    open = "open"
    resubmitted = "resubmitted"
    discarded = "discarded"
    all = "all"


MapOption = Annotated[str | None, typer.Option("--map", metavar="MAP", show_default=False, help="only this map's")]
CategoryOption = Annotated[Category | None, typer.Option("--category", show_default=False, help="only this category")]
Ids = Annotated[list[str] | None, typer.Argument(metavar="ID", show_default=False,
                                                 help="the entries' ids (as errors list shows them)")]
AllOpen = Annotated[bool, typer.Option("--all", help="every open entry (of --map and --category, if given)")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask before a bulk action")]


@app.command(name="list")
def list_(
    ctx: typer.Context,
    map_name: MapOption = None,
    status: Annotated[Status, typer.Option(help="which entries")] = Status.open,
    category: CategoryOption = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="at most this many, newest first")] = 100,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """The error log, newest failure first: id, map, key, category, attempts, first and last failure, message."""
    with connect(ctx, url, key, ErrorsApi, profile) as api:
        answer = api.listing(map_name=map_name, status=status, category=category, limit=limit)
    if as_json:
        print_json(answer)
        return
    entries = _entries(answer)
    out = stream_console()
    if not entries:
        what = "entries" if status == "all" else f"{status} entries"
        out.print(Text(f"no {what}" + "".join(f", {name} {value}" for name, value in (
            ("map", map_name), ("category", category)) if value)))
        return
    if not out.is_terminal:  # a log or a pipe: one whole line an entry, for grep and friends
        out.width = 1000
    out.print(_errors_table(entries, with_status=status != "open", width=out.width))
    if len(entries) >= limit:
        out.print(Text(f"(the newest {limit}; more with --limit, up to {MAX_LIMIT})"))


@app.command()
def show(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(metavar="ID", show_default=False, help="the entry's id")],
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """One entry whole: what failed, the target's full answer, and the change that failed."""
    with connect(ctx, url, key, ErrorsApi, profile) as api:
        entry = api.get(id)
    if as_json:
        print_json(entry)
        return
    out = stream_console()
    facts = [
        ("id", entry.get("id")), ("map", entry.get("map")), ("key", entry.get("key")),
        ("change", " ".join(str(entry.get(n)) for n in ("source", "operation") if entry.get(n))),
        ("category", entry.get("category")), ("status", entry.get("status")), ("attempts", entry.get("attempts")),
        ("first failed", when(entry.get("first_at"))), ("last failed", when(entry.get("last_at"))),
        ("target said", " ".join(str(entry.get(n)) for n in ("target_status", "target_code")
                                 if entry.get(n) is not None)),
        ("run", entry.get("run_id")), ("session", entry.get("session_id")),
    ]
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in facts:
        if value not in (None, ""):
            table.add_row(name, Text(str(value)))
    out.print(table)
    text = str(entry.get("text") or "")
    out.print(Text(f"\nerror text ({len(text):,} characters):", style="bold"))
    out.print(Text(text))
    out.print(Text("\nthe change:", style="bold"))
    out.print(Text(_change_text(entry.get("change"))))
    if entry.get("status") == "open":
        out.print(Text(f"\nresubmit it: dualwrite errors resubmit '{entry.get('id')}'   "
                       f"or discard it: dualwrite errors discard '{entry.get('id')}'"))


# --- resubmit and discard -------------------------------------------------------------------------------


def _by_id(api: ErrorsApi, action: str, ids: list[str], seams: Seams) -> dict[str, Any]:
    """Act on each id through its own route; an entry the engine refuses is reported and the others go on. An
    engine that stops answering (unreachable, 502/503/504) stops the run: the ids left are reported not tried."""
    done: list[str] = []
    failed: list[dict[str, str]] = []
    answers: dict[str, dict[str, Any]] = {}
    console, interactive = wait_console(seams)
    bar = Progress(TextColumn(f"{action}", markup=False), BarColumn(), MofNCompleteColumn(), console=console,
                   transient=True, disable=not interactive or len(ids) < 2)
    with bar:
        task = bar.add_task(action, total=len(ids))
        for number, id in enumerate(ids):
            try:
                answers[id] = api.act(id, action)
            except ApiError as error:
                failed.append({"id": id, "detail": str(error)})
                if error.transient:  # the engine, not this entry
                    failed += [{"id": left, "detail": f"not tried: {error}"} for left in ids[number + 1 :]]
                    break
            else:
                done.append(id)
            bar.advance(task)
    return {_DONE[action]: len(done), "ids": done, "failed": failed, "answers": answers}


_DONE = {"resubmit": "resubmitted", "discard": "discarded"}


def _in_bulk(api: ErrorsApi, action: str, ids: list[str], seams: Seams) -> dict[str, Any]:
    """The bulk route, in requests of BULK_IDS ids; per id when the engine has no bulk route."""
    total: dict[str, Any] = {_DONE[action]: 0, "ids": [], "failed": []}
    for start in range(0, len(ids), BULK_IDS):
        chunk = ids[start : start + BULK_IDS]
        answer = api.bulk(action, chunk)
        if answer is None:
            stream_console(stderr=True).print(Text(
                f"this engine has no bulk {action} route: {action} one entry at a time"))
            answer = _by_id(api, action, ids[start:], seams)
            answer.pop("answers")
            _add(total, answer, action, ids[start:])
            break
        _add(total, answer, action, chunk)
    return total


def _add(total: dict[str, Any], answer: dict[str, Any], action: str, sent: list[str]) -> None:
    failed = [f for f in answer.get("failed") or [] if isinstance(f, dict)]
    count = answer.get(_DONE[action])
    total[_DONE[action]] += count if isinstance(count, int) else 0
    ids = answer.get("ids")
    refused = {str(f.get("id")) for f in failed}
    total["ids"] += ids if isinstance(ids, list) else [i for i in sent if i not in refused]
    total["failed"] += failed


def _matched_summary(entries: list[dict[str, Any]]) -> str:
    counts = Counter(f"{e.get('map')}/{e.get('category')}" for e in entries)
    return ", ".join(f"{name}: {count:,}" for name, count in counts.most_common())


def _confirm(question: str) -> bool:
    try:
        return bool(typer.confirm(question, default=False, err=True))
    except typer.Abort:  # Ctrl-C or the end of stdin: no
        return False


def _act(ctx: typer.Context, action: str, ids: list[str] | None, all_open: bool, map_name: str | None,
         category: str | None, yes: bool, as_json: bool, url: str | None, key: str | None,
         profile: str | None) -> None:
    if ids and all_open:
        raise typer.BadParameter("give IDs or --all, not both")
    if not ids and not all_open:
        raise typer.BadParameter(f"name the entries to {action} (IDs), or --all for every open entry")
    if (map_name or category) and not all_open:
        raise typer.BadParameter("--map and --category choose entries for --all")
    seams = seams_of(ctx)
    out, err = stream_console(), stream_console(stderr=True)
    done_word = _DONE[action]
    with connect(ctx, url, key, ErrorsApi, profile) as api:
        if ids:
            result = _by_id(api, action, list(dict.fromkeys(ids)), seams)  # with each entry's answer
        else:
            result = _bulk(api, action, map_name, category, yes, as_json, out, err, seams)
    answers: dict[str, dict[str, Any]] = result.get("answers") or {}
    if as_json:
        print_json(result)
    else:
        for id in result["ids"]:
            message = answers.get(id, {}).get("message_id")
            out.print(Text(f"{done_word} {id}" + (f" (sent as {message})" if message else "")))
        for item in result["failed"]:
            err.print(Text(f"not {done_word}: {item.get('id')}: {item.get('detail')}"))
        tried = len(result["ids"]) + len(result["failed"])
        if tried > 1 or (tried and not ids):
            out.print(Text(f"{result[done_word]:,} {done_word}, {len(result['failed']):,} not"))
    if result["failed"]:
        raise typer.Exit(EXIT_FAILED)


def _bulk(api: ErrorsApi, action: str, map_name: str | None, category: str | None, yes: bool, as_json: bool,
          out: Console, err: Console, seams: Seams) -> dict[str, Any]:
    """List the open entries that match, say how many, ask (unless --yes), then act on exactly those."""
    entries = _entries(api.listing(map_name=map_name, status="open", category=category, limit=MAX_LIMIT))
    chosen = "".join(f", {name} {value}" for name, value in (("map", map_name), ("category", category)) if value)
    talk = err if as_json else out
    if not entries:
        talk.print(Text(f"no open entries{chosen}: nothing to {action}"))
        return {_DONE[action]: 0, "ids": [], "failed": []}
    ids = [str(e.get("id")) for e in entries]
    more = f" (the newest {MAX_LIMIT:,}: run it again for the rest)" if len(ids) >= MAX_LIMIT else ""
    talk.print(Text(f"{len(ids):,} open entr{'y' if len(ids) == 1 else 'ies'} match{chosen}{more}: "
                    f"{_matched_summary(entries)}"))
    if not yes and not _confirm(f"{action} {'it' if len(ids) == 1 else f'these {len(ids):,}'}?"):
        err.print(Text(f"nothing was {_DONE[action]}"))
        raise typer.Exit(EXIT_FAILED)
    return _in_bulk(api, action, ids, seams)


def _command(action: str, summary: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        ids: Ids = None,
        all_open: AllOpen = False,
        map_name: MapOption = None,
        category: CategoryOption = None,
        yes: Yes = False,
        as_json: AsJson = False,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
    ) -> None:
        _act(ctx, action, ids, all_open, map_name, category, yes, as_json, url, key, profile)

    command.__doc__ = summary
    return app.command(name=action)(command)


_command("resubmit", "Send the changes of entries again (same session, new message id): IDs, or --all open entries "
                     "(of --map, --category); --all says how many match and asks first unless --yes.")
_command("discard", "Mark entries discarded (their changes are not applied): IDs, or --all open entries (of --map, "
                    "--category); --all says how many match and asks first unless --yes.")
