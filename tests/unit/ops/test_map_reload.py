"""The runtime's map reload (functions.runtime.Runtime.reload_maps): a changed, valid set replaces the running
one and what holds maps is rebuilt; an invalid one is reported and the running set stays. No I/O but files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.maps.loader import maps_fingerprint
from core.settings import load_settings
from functions.runtime import Runtime
from tests.unit.test_settings import VALID

MAPS = Path(__file__).parents[3] / "maps"


def _runtime(folder: Path) -> Runtime:
    for path in MAPS.glob("*.json"):
        shutil.copy(path, folder / path.name)
    return Runtime(load_settings({**VALID, "MAPS_PATH": str(folder)}))


def test_a_changed_valid_map_set_replaces_the_running_one(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    before = runtime.maps
    assert runtime.reload_maps() is False  # nothing changed
    runtime.__dict__["worker"] = object()  # something built over the old maps
    path = tmp_path / "vendors.json"
    definition = json.loads(path.read_text())
    path.write_text(json.dumps({**definition, "title": "Vendors, edited"}))
    assert runtime.reload_maps() is True
    assert runtime.maps is not before and runtime.maps["vendors"].title == "Vendors, edited"
    assert "worker" not in runtime.__dict__ and runtime.maps_problem is None


def test_an_invalid_edit_keeps_the_running_maps_and_says_why_once(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    before = runtime.maps
    (tmp_path / "vendors.json").write_text("{not json")
    assert runtime.reload_maps() is False
    assert runtime.maps is before
    assert runtime.maps_problem is not None and "previous version keeps running" in runtime.maps_problem
    assert "vendors.json" in runtime.maps_problem


def test_the_fingerprint_follows_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    first = maps_fingerprint([tmp_path])
    (tmp_path / "a.json").write_text("{ }")
    second = maps_fingerprint([tmp_path])
    (tmp_path / "b.json").write_text("{}")
    assert len({first, second, maps_fingerprint([tmp_path])}) == 3
