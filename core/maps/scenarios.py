"""Scenario bundles: named sets of maps a project turns on together, in dependency order.

Defined as data in maps/scenarios/scenarios.json (a subfolder, so the map loader, which reads a folder's
*.json, never takes it for a map). A scenario names its maps and may require other scenarios (whose
maps it then includes, first). Checked against the loaded maps: an unknown map or required scenario,
a cycle of required scenarios, a map whose dependency (company map or lookup target) is in neither the
scenario nor a scenario it requires, and cycles of required lookups that cannot be broken are problems.
`expand` gives a scenario's maps in the order initial sync runs them (core.maps.graph.plan_sync).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.maps.graph import dependency_edges, plan_sync
from core.maps.model import TableMap
from core.maps.problems import Problem

SCENARIOS_FOLDER = "scenarios"
SCENARIOS_FILE_NAME = "scenarios.json"
_NAME = r"^[a-z0-9][a-z0-9-]*$"


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Unique scenario name, e.g. finance-reference-data")
    title: str
    description: str | None = None
    requires: list[str] = Field(default_factory=list, description="Scenarios whose maps this one needs first")
    maps: list[str] = Field(min_length=1, description="Maps of the scenario (any order: they are sorted)")


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: str | None = Field(None, alias="$schema")
    scenarios: list[Scenario] = Field(min_length=1)


class ScenarioView(BaseModel):
    """One scenario as `GET /api/manage/v1/scenarios` shows it."""

    name: str
    title: str
    description: str | None = None
    requires: list[str]
    maps: list[str] = Field(description="its maps and those of the scenarios it requires, in initial-sync order")
    enabled: list[str] = Field(description="those of `maps` that are enabled")
    disabled: list[str] = Field(description="those of `maps` that are not enabled (turn them on to use the scenario)")


class ScenarioList(BaseModel):
    scenarios: list[ScenarioView]
    problem: str | None = Field(None, description="why the scenarios file cannot be used with the running maps")


class ScenarioError(ValueError):
    """Scenarios that failed validation; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def scenarios_file(maps_path: str | Path) -> Path:
    """Where the scenarios of the maps folder `maps_path` are defined."""
    return Path(maps_path) / SCENARIOS_FOLDER / SCENARIOS_FILE_NAME


class Scenarios:
    """Checked scenarios over a set of maps."""

    def __init__(
        self, scenarios: list[Scenario], maps: Mapping[str, TableMap], file: str = SCENARIOS_FILE_NAME
    ) -> None:
        self.file = file
        self.maps = maps
        self.by_name: dict[str, Scenario] = {}
        problems: list[Problem] = []
        for scenario in scenarios:
            if scenario.name in self.by_name:
                problems.append(self._problem(scenario.name, "the scenario is defined twice"))
            self.by_name[scenario.name] = scenario
        for scenario in scenarios:
            problems += self._check(scenario)
        if problems:
            raise ScenarioError(problems)

    @classmethod
    def load(cls, path: str | Path, maps: Mapping[str, TableMap]) -> Scenarios:
        file = Path(path)
        try:
            raw: Any = json.loads(file.read_text(encoding="utf-8"))
            parsed = ScenarioFile.model_validate(raw)
        except (OSError, ValueError) as exc:
            detail = (
                "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            raise ScenarioError([Problem(str(file), None, None, f"cannot read scenarios: {detail}")]) from exc
        return cls(list(parsed.scenarios), maps, str(file))

    def _problem(self, scenario: str, message: str) -> Problem:
        return Problem(self.file, None, None, f"scenario {scenario!r}: {message}")

    def _check(self, scenario: Scenario) -> list[Problem]:
        problems = [
            self._problem(scenario.name, f"unknown map {name!r}") for name in scenario.maps if name not in self.maps
        ]
        problems += [
            self._problem(scenario.name, f"requires unknown scenario {name!r}")
            for name in scenario.requires
            if name not in self.by_name
        ]
        if problems:
            return problems
        cycle = self._cycle(scenario.name, [])
        if cycle:
            return [self._problem(scenario.name, "scenarios require each other: " + " -> ".join(cycle))]
        names = self.map_names(scenario.name)
        chosen = [self.maps[n] for n in names]
        for edge in dependency_edges(chosen):
            if edge.target not in names and not self._conditional(edge.source, edge.lookup):
                what = f"its lookup {edge.lookup!r}" if edge.lookup else "its company"
                problems.append(
                    self._problem(
                        scenario.name,
                        f"map {edge.source!r} needs map {edge.target!r} ({what}), which is in neither "
                        "the scenario nor a scenario it requires",
                    )
                )
        plan = plan_sync(chosen)
        problems += [
            self._problem(scenario.name, "cycle of required lookups cannot be broken: " + " -> ".join(c))
            for c in plan.unbreakable
        ]
        return problems

    def _conditional(self, source: str, lookup: str | None) -> bool:
        """Whether `source`'s lookup is active only with its target enabled: then the scenario works without it."""
        return any(lk.dataverse == lookup and lk.when_target_enabled for lk in self.maps[source].lookups)

    def _cycle(self, name: str, path: list[str]) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        scenario = self.by_name.get(name)
        if scenario is None:
            return []
        for required in scenario.requires:
            found = self._cycle(required, [*path, name])
            if found:
                return found
        return []

    def map_names(self, name: str) -> list[str]:
        """The scenario's maps with those of the scenarios it requires (theirs first), each once."""
        scenario = self.by_name[name]
        names: dict[str, None] = {}
        for required in scenario.requires:
            names.update(dict.fromkeys(self.map_names(required)))
        names.update(dict.fromkeys(scenario.maps))
        return list(names)

    def expand(self, name: str) -> list[str]:
        """The scenario's maps (with its required scenarios') in dependency order: what initial sync runs."""
        if name not in self.by_name:
            raise KeyError(f"unknown scenario {name!r} (known: {', '.join(sorted(self.by_name))})")
        return list(plan_sync(self.maps[n] for n in self.map_names(name)).order)

    def view(self) -> list[dict[str, Any]]:
        """Every scenario, as the API and CLI show it: its maps in order and whether each is enabled."""
        out = []
        for scenario in self.by_name.values():
            order = self.expand(scenario.name)
            out.append(
                ScenarioView(
                    name=scenario.name,
                    title=scenario.title,
                    description=scenario.description,
                    requires=list(scenario.requires),
                    maps=order,
                    enabled=[n for n in order if self.maps[n].enabled],
                    disabled=[n for n in order if not self.maps[n].enabled],
                ).model_dump()
            )
        return out
