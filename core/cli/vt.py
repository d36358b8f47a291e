"""`dualwrite vt ...`: virtual tables. `validate` checks the definition files (virtualtables/*.json) with the
engine's own model; `metadata` and `query` are clients of the engine's OData v4 endpoint (`/api/odata/`), the one
Dataverse's OData v4 Data Provider reads, sending its key the way a data source's request parameter does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table
from rich.text import Text

from core.cli.api import EXIT_FAILED, AsJson, Key, ProfileName, Url, connection, seams_of, stream_console
from core.cli.config import LOCAL_URL, SETTINGS_FILES, same_url

ODATA_PATH = "/api/odata/"
VT_KEY_ENV = "DUALWRITE_VT_KEY"
DEFAULT_KEY_HEADER = "x-vt-key"
DEFAULT_PATHS = ["virtualtables"]

app = typer.Typer(
    name="vt",
    no_args_is_help=True,
    help="Virtual tables: validate definition files; read the OData v4 endpoint's $metadata; query an entity set.",
)

VtKey = Annotated[
    str | None,
    typer.Option(
        "--vt-key",
        help=f"the endpoint's key (or {VT_KEY_ENV}; for the local stack VIRTUAL_TABLES_KEY of "
        "local.settings(.sample).json; else the engine key of --key/profile)",
        show_default=False,
    ),
]
KeyHeader = Annotated[str, typer.Option(help="header the key is sent in")]


def _fail(message: str) -> typer.Exit:
    stream_console(stderr=True).print(Text(message))
    return typer.Exit(EXIT_FAILED)


def local_vt_key(directory: Path | None = None) -> str | None:
    """VIRTUAL_TABLES_KEY of the local host's settings (local.settings.json, else the committed sample)."""
    for name in SETTINGS_FILES:
        try:
            values = json.loads(((directory or Path.cwd()) / name).read_text(encoding="utf-8")).get("Values") or {}
        except (OSError, ValueError, AttributeError):
            continue
        found = values.get("VIRTUAL_TABLES_KEY") if isinstance(values, dict) else None
        if isinstance(found, str) and found:
            return found
    return None


def _client(
    ctx: typer.Context, url: str | None, key: str | None, profile: str | None, vt_key: str | None, key_header: str
) -> httpx.Client:
    found = connection(url, key, profile)
    local = same_url(found.url, LOCAL_URL)
    secret = vt_key or os.environ.get(VT_KEY_ENV) or (local_vt_key() if local else None) or found.key
    return httpx.Client(
        base_url=found.url + ODATA_PATH,
        headers={key_header: secret, "accept": "application/json", "OData-MaxVersion": "4.0"},
        transport=seams_of(ctx).transport,
        timeout=60,
    )


def _get(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> httpx.Response:
    try:
        response = client.get(path, params=params)
    except httpx.TransportError as error:
        raise _fail(
            f"cannot reach the OData endpoint at {client.base_url} ({type(error).__name__}: {error}); "
            "is the engine running (locally: make run)?"
        ) from None
    if response.is_error:
        raise _fail(f"{response.status_code} from {response.request.url.copy_with(query=None)}: {_message(response)}")
    return response


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("detail") or body.get("title"):
            return str(body.get("detail") or body.get("title"))
    return response.text[:500]


@app.command()
def validate(
    paths: Annotated[
        list[str] | None, typer.Argument(metavar="PATHS", help="definition folders (default: virtualtables)")
    ] = None,
) -> None:
    """Check virtual table definition files with the engine's model; non-zero exit on any error."""
    from core.virtual.catalog import DefinitionError, load_folder

    total = 0
    failed = False
    for folder in paths or DEFAULT_PATHS:
        try:
            tables = load_folder(folder)
        except DefinitionError as error:
            for problem in error.problems:
                sys.stderr.write(f"{folder}/{problem}\n")
            failed = True
            continue
        for table in tables:
            sys.stdout.write(f"{table.entity_set}: {len(table.columns)} column(s), source {table.source.kind}\n")
        total += len(tables)
    if failed:
        sys.stderr.write("virtual table definitions have errors\n")
        raise typer.Exit(EXIT_FAILED)
    if not total:
        sys.stderr.write(f"no virtual table definitions in {' '.join(paths or DEFAULT_PATHS)}\n")
        raise typer.Exit(2)
    sys.stdout.write(f"ok: {total} virtual table(s)\n")


@app.command()
def metadata(
    ctx: typer.Context,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
    vt_key: VtKey = None,
    key_header: KeyHeader = DEFAULT_KEY_HEADER,
    sets: Annotated[bool, typer.Option("--sets", help="list the entity sets (service document) instead")] = False,
) -> None:
    """Print the endpoint's $metadata (CSDL XML), or with --sets its entity sets."""
    with _client(ctx, url, key, profile, vt_key, key_header) as client:
        if sets:
            body = _get(client, "").json()
            for item in body.get("value", []):
                sys.stdout.write(f"{item.get('name')}\t{item.get('url')}\n")
            return
        sys.stdout.write(_get(client, "$metadata").text.rstrip("\n") + "\n")


@app.command()
def query(
    ctx: typer.Context,
    entity_set: Annotated[str, typer.Argument(help="entity set name (case-sensitive)")],
    row_id: Annotated[str | None, typer.Option("--id", help="read one row by its GUID")] = None,
    select: Annotated[str | None, typer.Option("--select", help="$select")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="$filter")] = None,
    orderby: Annotated[str | None, typer.Option("--orderby", help="$orderby")] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="$top")] = None,
    count: Annotated[bool, typer.Option("--count", help="ask for @odata.count")] = False,
    all_pages: Annotated[bool, typer.Option("--all", help="follow @odata.nextLink to the end")] = False,
    page_size: Annotated[
        int | None, typer.Option("--page-size", min=1, help="Prefer: odata.maxpagesize (server-driven pages)")
    ] = None,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
    vt_key: VtKey = None,
    key_header: KeyHeader = DEFAULT_KEY_HEADER,
) -> None:
    """Query an entity set of the endpoint as Dataverse would (first page, or --all)."""
    params = {
        name: value
        for name, value in (
            ("$select", select),
            ("$filter", filter_),
            ("$orderby", orderby),
            ("$top", str(top) if top else None),
            ("$count", "true" if count else None),
        )
        if value
    }
    with _client(ctx, url, key, profile, vt_key, key_header) as client:
        if page_size:
            client.headers["Prefer"] = f"odata.maxpagesize={page_size}"
        if row_id:
            row = _get(client, f"{entity_set}({row_id})", {"$select": select} if select else None).json()
            _show([row], None, as_json)
            return
        answer = _get(client, entity_set, params).json()
        rows = list(answer.get("value", []))
        total = answer.get("@odata.count")
        while all_pages and answer.get("@odata.nextLink"):
            answer = _get(client, str(answer["@odata.nextLink"])).json()
            rows.extend(answer.get("value", []))
        _show(rows, total, as_json, more=bool(answer.get("@odata.nextLink")))


def _show(rows: list[dict[str, Any]], total: Any, as_json: bool, more: bool = False) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"count": total, "value": rows, "more": more}, indent=2, default=str) + "\n")
        return
    columns = [c for c in dict.fromkeys(k for row in rows for k in row) if not c.startswith("@")]
    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console = stream_console()
    console.print(table)
    summary = (
        f"{len(rows)} row(s)" + (f" of {total}" if total is not None else "") + ("; more pages: --all" if more else "")
    )
    console.print(Text(summary))
