from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.maps.overview import maps_overview

SHIPPED = Path(__file__).parents[3] / "maps"


def test_shipped_maps_are_valid_and_ordered() -> None:
    overview = maps_overview([SHIPPED])
    assert overview["valid"] is True
    assert len(overview["maps"]) == len(overview["order"]) == len(list(SHIPPED.glob("*.json"))) - 1  # minus schema
    assert overview["plan"][0].startswith("1. sync ")


def test_a_broken_file_makes_the_overview_invalid_and_names_the_problem(tmp_path: Path) -> None:
    shutil.copy(SHIPPED / "customers.json", tmp_path / "customers.json")
    broken = json.loads((SHIPPED / "vendors.json").read_text())
    broken["fields"][0]["fno"] = 42
    (tmp_path / "vendors.json").write_text(json.dumps(broken))
    overview = maps_overview([tmp_path])
    assert overview["valid"] is False
    assert any(p["file"].endswith("vendors.json") and p["severity"] == "error" for p in overview["problems"])
