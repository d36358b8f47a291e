"""Loading the virtual table definitions (virtualtables/*.json), with errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from core.virtual.model import VirtualTable


class DefinitionError(ValueError):
    """One or more definition files are wrong; each line names file, field and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid virtual table definitions:\n  " + "\n  ".join(problems))


def load_file(path: Path) -> VirtualTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DefinitionError([f"{path.name}: cannot be read as JSON: {error}"]) from None
    try:
        return VirtualTable.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            where = ".".join(str(p) for p in item["loc"]) or "(file)"
            problems.append(f"{path.name}: {where}: {item['msg'].removeprefix('Value error, ')}")
        raise DefinitionError(problems) from None


def load_folder(folder: str | Path) -> list[VirtualTable]:
    """Every `*.json` of the folder but the schema; two tables with one entity set name are an error."""
    root = Path(folder)
    if not root.is_dir():
        return []
    tables: list[VirtualTable] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in sorted(root.glob("*.json")):
        if path.name.endswith(".schema.json"):
            continue
        try:
            table = load_file(path)
        except DefinitionError as error:
            problems.extend(error.problems)
            continue
        if table.entity_set in seen:
            problems.append(
                f"{path.name}: entity_set: {table.entity_set!r} is also defined in {seen[table.entity_set]}"
            )
            continue
        seen[table.entity_set] = path.name
        tables.append(table)
    if problems:
        raise DefinitionError(problems)
    return tables
