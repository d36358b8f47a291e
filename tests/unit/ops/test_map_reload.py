"""The runtime's map reload (functions.runtime.Runtime.reload_maps): the files overlaid by the latest stored
revisions; a changed, valid set replaces the running one and what holds maps is rebuilt; an invalid one is reported
and the running set stays. Files in a temporary folder, the stored revisions in memory (tests/unit/ops/
memory_versions.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from azure.core.exceptions import AzureError

from core.maps import MapDefinitionError
from core.maps.loader import maps_fingerprint
from core.ops.mapversions import MapVersions
from core.settings import load_settings
from functions.runtime import Runtime
from tests.unit.ops.memory_versions import MemoryVersions
from tests.unit.test_settings import VALID

MAPS = Path(__file__).parents[3] / "maps"


def _runtime(folder: Path, store: MemoryVersions | None = None) -> Runtime:
    for path in MAPS.glob("*.json"):
        shutil.copy(path, folder / path.name)
    runtime = Runtime(load_settings({**VALID, "MAPS_PATH": str(folder)}))
    runtime.__dict__["map_versions"] = MapVersions(store or MemoryVersions(), [str(folder)])  # type: ignore[arg-type]
    return runtime


def _edited(folder: Path, file: str, **changes: object) -> str:
    """The JSON of a map file of `folder` with some settings changed."""
    return json.dumps({**json.loads((folder / f"{file}.json").read_text()), **changes})


async def _started(runtime: Runtime) -> None:
    """What get_runtime does before first use: the first load, stored revisions included."""
    assert runtime.maps_due()
    assert await runtime.reload_maps() is False  # a first load replaces nothing (deployment runs at start anyway)
    assert not runtime.maps_due()


async def test_a_changed_valid_map_file_replaces_the_running_set(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    await _started(runtime)
    before = runtime.maps
    assert await runtime.reload_maps() is False  # nothing changed
    runtime.__dict__["worker"] = object()  # something built over the old maps
    (tmp_path / "vendors.json").write_text(_edited(tmp_path, "vendors", title="Vendors, edited"))
    assert await runtime.reload_maps() is True
    assert runtime.maps is not before and runtime.maps["vendors"].title == "Vendors, edited"
    assert "worker" not in runtime.__dict__ and runtime.maps_problem is None


async def test_an_invalid_file_edit_keeps_the_running_maps_and_says_why_once(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    await _started(runtime)
    before = runtime.maps
    (tmp_path / "vendors.json").write_text("{not json")
    assert await runtime.reload_maps() is False
    assert runtime.maps is before
    assert runtime.maps_problem is not None and "previous version keeps running" in runtime.maps_problem
    assert "vendors.json" in runtime.maps_problem


async def test_the_first_load_overlays_the_stored_revisions(tmp_path: Path) -> None:
    store = MemoryVersions()
    runtime = _runtime(tmp_path, store)
    await runtime.map_versions.change("vendors", _edited(tmp_path, "vendors", title="Stored"), by="ana")
    await _started(runtime)
    assert runtime.maps["vendors"].title == "Stored"
    assert (runtime.maps.loaded("vendors").file, runtime.maps.loaded("vendors").revision) == ("stored revision 1", 1)


async def test_a_new_stored_revision_beats_the_file_from_the_next_check(tmp_path: Path) -> None:
    store = MemoryVersions()
    runtime = _runtime(tmp_path, store)
    await _started(runtime)
    assert runtime.maps.loaded("vendors").revision is None
    runtime.__dict__["modes"] = object()
    queries = store.key_queries
    await runtime.map_versions.change("vendors", _edited(tmp_path, "vendors", title="From the API"), by="ana")
    assert await runtime.reload_maps() is True
    assert store.key_queries == queries + 2  # one for the change, one for the check: keys only
    assert runtime.maps["vendors"].title == "From the API" and "modes" not in runtime.__dict__
    (tmp_path / "vendors.json").write_text(_edited(tmp_path, "vendors", title="The file, edited"))
    assert await runtime.reload_maps() is True  # the files changed: loaded again, and the revision still wins
    assert runtime.maps["vendors"].title == "From the API"


async def test_a_stored_map_no_file_has_is_added(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    await _started(runtime)
    await runtime.map_versions.change("vendor-groups-copy", _edited(tmp_path, "vendor-groups",
                                                                     name="vendor-groups-copy"), by="ana")
    assert await runtime.reload_maps() is True
    assert runtime.maps.loaded("vendor-groups-copy").file == "stored revision 1"


async def test_an_invalid_stored_set_keeps_the_running_maps_and_says_why(tmp_path: Path) -> None:
    store = MemoryVersions()
    runtime = _runtime(tmp_path, store)
    await _started(runtime)
    before = runtime.maps
    # Stored behind the API's back (a PUT is validated first): what an older app version or a race can leave.
    await store.add("vendors", 1, _edited(tmp_path, "vendors", conflict="whoever_shouts_loudest"), version="9",
                    by="someone")
    assert await runtime.reload_maps() is False
    assert runtime.maps is before and runtime.maps.loaded("vendors").revision is None
    problem = runtime.maps_problem or ""
    assert "previous version keeps running" in problem and "stored revision 1" in problem and "conflict" in problem
    assert await runtime.reload_maps() is False and runtime.maps_problem == problem  # reported once, kept


async def test_a_store_that_does_not_answer_keeps_the_running_maps_but_fails_the_first_load(tmp_path: Path) -> None:
    store = MemoryVersions()
    runtime = _runtime(tmp_path, store)
    store.down = True
    with pytest.raises(AzureError):  # which maps run cannot be known: nothing runs on a guess
        await runtime.reload_maps()
    assert runtime.maps_due()
    store.down = False
    await _started(runtime)
    before = runtime.maps
    store.down = True
    assert await runtime.reload_maps() is False
    assert runtime.maps is before and runtime.maps_problem is None


async def test_invalid_maps_at_the_first_load_fail_loudly(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    (tmp_path / "vendors.json").write_text("{not json")
    with pytest.raises(MapDefinitionError):
        await runtime.reload_maps()


def test_the_fingerprint_follows_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    first = maps_fingerprint([tmp_path])
    (tmp_path / "a.json").write_text("{ }")
    second = maps_fingerprint([tmp_path])
    (tmp_path / "b.json").write_text("{}")
    assert len({first, second, maps_fingerprint([tmp_path])}) == 3
