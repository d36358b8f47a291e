"""Reading map files: JSON (numbers as Decimal, never float) into `TableMap`s, with every
syntax or structure problem reported by file, map and field instead of raised."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.maps.model import TableMap
from core.maps.problems import Problem

SCHEMA_FILE_NAME = "map.schema.json"


@dataclass(frozen=True)
class LoadedMap:
    map: TableMap
    file: str  # where it came from, as problems name it: the file, or "stored revision 3" (core.maps.overlay)
    revision: int | None = None  # the stored revision it is; None for a map file


@dataclass
class LoadResult:
    maps: list[LoadedMap] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def map_files(paths: Iterable[str | Path]) -> list[Path]:
    """The map files named by `paths`: files as given, directories' *.json except the schema."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(p for p in sorted(path.glob("*.json")) if p.name != SCHEMA_FILE_NAME)
        else:
            files.append(path)
    return files


def maps_fingerprint(paths: Iterable[str | Path]) -> str:
    """A hash of the map files' names and contents: it changes when a map file is added, edited or removed
    (what a running app compares to reload its maps)."""
    digest = hashlib.sha256()
    for path in map_files(paths):
        digest.update(str(path).encode() + b"\0")
        with contextlib.suppress(OSError):  # a file removed meanwhile counts as a change the next time
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def load_maps(paths: Iterable[str | Path]) -> LoadResult:
    result = LoadResult()
    for path in map_files(paths):
        loaded, problems = load_map_file(path)
        result.problems.extend(problems)
        if loaded is not None:
            result.maps.append(loaded)
    return result


def load_map_file(path: str | Path) -> tuple[LoadedMap | None, list[Problem]]:
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, [Problem(file, None, None, f"cannot read the file: {error}")]
    return load_map_text(text, file, name=path.stem)


def load_map_text(text: str, origin: str, *, name: str, revision: int | None = None
                  ) -> tuple[LoadedMap | None, list[Problem]]:
    """One map from its JSON text (a file's, or a revision stored through the management API), its problems
    named by `origin`; `name` names the map in problems when the text does not."""
    try:
        raw = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        return None, [Problem(origin, None, None, f"not valid JSON: {error.msg} (line {error.lineno}, "
                                                  f"column {error.colno})")]
    map_name = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else name
    try:
        table_map = TableMap.model_validate(raw)
    except ValidationError as error:
        return None, [_problem(origin, map_name, raw, item) for item in error.errors()]
    return LoadedMap(table_map, origin, revision), []


def _problem(file: str, map_name: str | None, raw: Any, item: Any) -> Problem:
    location = list(item["loc"])
    field_name = None
    if len(location) >= 2 and location[0] in ("fields", "lookups") and isinstance(location[1], int):
        entry = _at(raw, location[:2])
        if isinstance(entry, dict):
            field_name = entry.get("fno") or entry.get("dataverse") if location[0] == "fields" else entry.get(
                "dataverse")
            field_name = field_name if isinstance(field_name, str) else None
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location).lstrip(".")
    message = item["msg"]
    if item["type"] == "extra_forbidden":
        message = "unknown setting (not part of the map format)"
    elif item["type"] == "literal_error" or item["type"] == "union_tag_invalid":
        message = f"{message}, got {item.get('input')!r}"
    return Problem(file, map_name, field_name or (path or None), f"{path}: {message}" if path else message)


def _at(raw: Any, location: list[Any]) -> Any:
    for part in location:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw
