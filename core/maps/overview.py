"""What a person (or script) asks first about deployed maps: which, in what order, what is wrong."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.maps.graph import plan_sync
from core.maps.loader import load_maps
from core.maps.mapset import set_problems


def maps_overview(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Every map file under `paths`, summarised, with the sync plan and every problem found."""
    result = load_maps(paths)
    problems = set_problems(result)
    plan = plan_sync(loaded.map for loaded in result.maps)
    return {
        "valid": not any(p.severity == "error" for p in problems),
        "maps": [
            {
                "name": loaded.map.name,
                "title": loaded.map.title,
                "version": loaded.map.version,
                "enabled": loaded.map.enabled,
                "primary": loaded.map.primary,
                "fno_entity_set": loaded.map.fno.entity_set,
                "dataverse_table": loaded.map.dataverse.table,
                "file": loaded.file,
            }
            for loaded in result.maps
        ],
        "order": list(plan.order),
        "plan": plan.describe(),
        "problems": [
            {"file": p.file, "map": p.map, "field": p.field, "severity": p.severity, "message": p.message}
            for p in problems
        ],
    }
