"""A problem found in a map: where (file, map, field) and what, in words a map author acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Problem:
    file: str
    map: str | None
    field: str | None
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file
        if self.map:
            where += f": map {self.map!r}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.severity}: {self.message}"


class MapDefinitionError(ValueError):
    """Maps that failed validation; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
