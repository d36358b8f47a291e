"""`dualwrite maps ...`: validate map files, print the sync order, keep the JSON Schema current."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import httpx

from core.connectors.metadata import MetadataError, fetch_dataverse_schemas, fetch_fno_schemas
from core.maps import Problem, check_metadata, load_maps, plan_sync, validate_maps
from core.maps.loader import SCHEMA_FILE_NAME
from core.maps.schema import map_json_schema_text

DEFAULT_PATHS = ["maps"]


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("maps", help="table maps: validate, sync order, JSON Schema")
    sub = group.add_subparsers(dest="maps_command", required=True, metavar="SUBCOMMAND")

    validate = sub.add_parser("validate", help="check map files; non-zero exit on any error")
    validate.add_argument("paths", nargs="*", default=DEFAULT_PATHS, help="map files or folders (default: maps)")
    validate.add_argument("--dataverse-url", help="also check against this Dataverse environment's metadata")
    validate.add_argument("--fno-url", help="also check against this F&O environment's $metadata")
    validate.add_argument("--token", help="bearer token for both (or DUALWRITE_TOKEN)")
    validate.add_argument("--dataverse-token", help="bearer token for Dataverse (or DUALWRITE_DATAVERSE_TOKEN)")
    validate.add_argument("--fno-token", help="bearer token for F&O (or DUALWRITE_FNO_TOKEN)")
    validate.set_defaults(handler=_validate)

    order = sub.add_parser("order", help="print the dependency order and how cycles are broken")
    order.add_argument("paths", nargs="*", default=DEFAULT_PATHS)
    order.set_defaults(handler=_order)

    schema = sub.add_parser("schema", help=f"write (or --check) maps/{SCHEMA_FILE_NAME} from the model")
    schema.add_argument("--output", default=f"maps/{SCHEMA_FILE_NAME}")
    schema.add_argument("--check", action="store_true", help="fail if the file is not up to date")
    schema.set_defaults(handler=_schema)


def _write(line: str, stream=None) -> None:  # type: ignore[no-untyped-def]
    (stream or sys.stdout).write(line + "\n")


def _report(problems: list[Problem]) -> int:
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        _write(str(problem), sys.stderr if problem.severity == "error" else sys.stdout)
    return len(errors)


def _validate(args: argparse.Namespace) -> int:
    result = load_maps(args.paths)
    if not result.maps and not result.problems:
        _write(f"no map files in {' '.join(args.paths)}", sys.stderr)
        return 2
    problems = result.problems + validate_maps(result.maps)
    if args.dataverse_url or args.fno_url:
        try:
            problems += asyncio.run(_live_problems(args, result.maps))
        except MetadataError as error:
            _write(f"cannot read live metadata: {error}", sys.stderr)
            return 2
    errors = _report(problems)
    checked = f"{len(result.maps)} map(s)" + (" against live metadata" if args.dataverse_url or args.fno_url else "")
    if errors:
        _write(f"{errors} error(s) in {checked}", sys.stderr)
        return 1
    _write(f"ok: {checked}")
    return 0


async def _live_problems(args: argparse.Namespace, loaded: list) -> list[Problem]:
    shared = args.token or os.environ.get("DUALWRITE_TOKEN")
    dv_token = args.dataverse_token or os.environ.get("DUALWRITE_DATAVERSE_TOKEN") or shared
    fno_token = args.fno_token or os.environ.get("DUALWRITE_FNO_TOKEN") or shared
    async with httpx.AsyncClient(timeout=60) as client:
        dataverse = fno = None
        if args.dataverse_url:
            tables = {item.map.dataverse.table for item in loaded}
            dataverse = await fetch_dataverse_schemas(client, args.dataverse_url, tables, dv_token)
        if args.fno_url:
            fno = await fetch_fno_schemas(client, args.fno_url, fno_token)
    return check_metadata(loaded, fno=fno, dataverse=dataverse)


def _order(args: argparse.Namespace) -> int:
    result = load_maps(args.paths)
    problems = result.problems + validate_maps(result.maps)
    if _report(problems):
        return 1
    plan = plan_sync([item.map for item in result.maps])
    for line in plan.describe():
        _write(line)
    for cycle in plan.cycles:
        _write(f"cycle: {' -> '.join([*cycle, cycle[0]])}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    path = Path(args.output)
    text = map_json_schema_text()
    if args.check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _write(f"{path} is out of date: run `dualwrite maps schema`", sys.stderr)
            return 1
        _write(f"{path} is up to date")
        return 0
    path.write_text(text, encoding="utf-8")
    _write(f"wrote {path}")
    return 0
