"""All maps of a deployment, loaded and validated together: the engine's entry point."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from core.maps.convert import ProjectDirection
from core.maps.graph import SyncPlan, plan_sync
from core.maps.loader import LoadedMap, load_maps
from core.maps.model import TableMap
from core.maps.problems import MapDefinitionError
from core.maps.project import project
from core.maps.validation import validate_maps


class MapSet(Mapping[str, TableMap]):
    """Maps by name, with lookups resolvable across them."""

    def __init__(self, loaded: Iterable[LoadedMap]) -> None:
        self._loaded = {item.map.name: item for item in loaded}

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> MapSet:
        """Load and validate; raises MapDefinitionError with every error found."""
        result = load_maps(paths)
        problems = result.problems + validate_maps(result.maps)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise MapDefinitionError(errors)
        return cls(result.maps)

    def __getitem__(self, name: str) -> TableMap:
        return self._loaded[name].map

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def __len__(self) -> int:
        return len(self._loaded)

    def file_of(self, name: str) -> str:
        return self._loaded[name].file

    def for_fno_entity(self, entity_set: str) -> list[TableMap]:
        return [m for m in self.values() if m.fno.entity_set == entity_set]

    def for_dataverse_table(self, table: str) -> list[TableMap]:
        return [m for m in self.values() if m.dataverse.table == table]

    def project(self, name: str, direction: ProjectDirection, record: Mapping[str, Any]) -> dict[str, Any]:
        return project(self[name], direction, record, maps=self)

    def plan(self) -> SyncPlan:
        return plan_sync(self.values())
