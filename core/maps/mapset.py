"""All maps of a deployment, loaded and validated together: the engine's entry point."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from core.maps.convert import ProjectDirection
from core.maps.graph import SyncPlan, plan_sync
from core.maps.loader import LoadedMap, LoadResult, load_maps
from core.maps.model import TableMap
from core.maps.overlay import StoredMap, overlay
from core.maps.problems import MapDefinitionError, Problem
from core.maps.project import project
from core.maps.validation import validate_maps


def set_problems(result: LoadResult) -> list[Problem]:
    """Every problem of a load: each file's own (syntax, structure), then the set's (names, lookups, cycles)."""
    return result.problems + validate_maps(result.maps)


class MapSet(Mapping[str, TableMap]):
    """Maps by name, with lookups resolvable across them."""

    def __init__(self, loaded: Iterable[LoadedMap]) -> None:
        self._loaded = {item.map.name: item for item in loaded}
        # What runs: a lookup active only with its target enabled is left out while that map is off. `loaded`
        # keeps each definition as written.
        enabled = {name for name, item in self._loaded.items() if item.map.enabled}
        self._running = {name: item.map.with_active_lookups(enabled) for name, item in self._loaded.items()}

    @classmethod
    def load(cls, paths: Iterable[str | Path], stored: Iterable[StoredMap] = ()) -> MapSet:
        """Load the map files, overlaid by the `stored` revisions (core.maps.overlay), and validate them;
        raises MapDefinitionError with every error found."""
        return cls.checked(overlay(load_maps(paths), stored))

    @classmethod
    def checked(cls, result: LoadResult) -> MapSet:
        """The maps of `result` once they pass validation as a set; else MapDefinitionError with every error."""
        problems = set_problems(result)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise MapDefinitionError(errors)
        return cls(result.maps)

    def __getitem__(self, name: str) -> TableMap:
        return self._running[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def __len__(self) -> int:
        return len(self._loaded)

    def file_of(self, name: str) -> str:
        return self._loaded[name].file

    def loaded(self, name: str) -> LoadedMap:
        """The map with where it came from: its file, or the stored revision it is."""
        return self._loaded[name]

    def for_fno_entity(self, entity_set: str) -> list[TableMap]:
        return [m for m in self.values() if m.fno.entity_set == entity_set]

    def for_dataverse_table(self, table: str) -> list[TableMap]:
        return [m for m in self.values() if m.dataverse.table == table]

    def project(self, name: str, direction: ProjectDirection, record: Mapping[str, Any]) -> dict[str, Any]:
        return project(self[name], direction, record, maps=self)

    def plan(self) -> SyncPlan:
        return plan_sync(self.values())
