"""`dualwrite maps ...`: validate map files, print the sync order, keep the JSON Schema current."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, TextIO

import httpx
import typer

from core.connectors.metadata import MetadataError, fetch_dataverse_schemas, fetch_fno_schemas
from core.maps import LoadedMap, Problem, check_metadata, load_maps, plan_sync, validate_maps
from core.maps.loader import SCHEMA_FILE_NAME
from core.maps.schema import map_json_schema_text

DEFAULT_PATHS = ["maps"]

app = typer.Typer(name="maps", help="Table maps: validate, sync order, JSON Schema.", no_args_is_help=True)

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
    problems = result.problems + validate_maps(result.maps)
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
    problems = result.problems + validate_maps(result.maps)
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
