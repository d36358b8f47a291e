"""Changing a map through the management API (core.ops.mapversions.MapVersions): validated over the whole set
before anything is stored, stored as the next revision, refused when stale or beaten by another writer, restored.
The shipped map files, the revisions in memory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from core.maps import MapDefinitionError
from core.ops.mapversions import BadMapBody, MapVersions, RevisionNotFound, StaleRevision
from core.store.mapversions import MAX_UNITS, BodyTooLarge
from tests.unit.ops.memory_versions import MemoryVersions

MAPS = Path(__file__).parents[3] / "maps"


def _vendors(**changes: object) -> str:
    return json.dumps({**json.loads((MAPS / "vendors.json").read_text()), **changes})


@pytest.fixture
def store() -> MemoryVersions:
    return MemoryVersions()


@pytest.fixture
def versions(store: MemoryVersions) -> MapVersions:
    return MapVersions(store, [str(MAPS)])  # type: ignore[arg-type]


async def test_a_change_is_stored_as_the_next_revision_and_runs_over_the_file(versions: MapVersions) -> None:
    first = await versions.change("vendors", _vendors(version="1.1.0"), by="ana", reason="more columns")
    second = await versions.change("vendors", _vendors(version="1.2.0"), by="bob", expected=1)
    assert (first.revision, first.version, first.by, first.reason) == (1, "1.1.0", "ana", "more columns")
    assert (second.revision, second.version) == (2, "1.2.0")
    maps = await versions.load()
    assert maps["vendors"].version == "1.2.0" and maps.loaded("vendors").file == "stored revision 2"
    assert [(r.revision, r.version, r.body) for r in await versions.history("vendors")] == [
        (2, "1.2.0", None), (1, "1.1.0", None)]


async def test_an_invalid_change_is_refused_naming_the_field_and_nothing_is_stored(
        versions: MapVersions, store: MemoryVersions) -> None:
    with pytest.raises(MapDefinitionError) as refused:
        await versions.change("vendors", _vendors(conflict="whoever_shouts_loudest"), by="ana")
    [problem] = refused.value.problems
    assert (problem.file, problem.map, problem.field) == ("stored revision 1", "vendors", "conflict")
    assert store.rows == {}


async def test_a_body_that_is_no_valid_map_is_refused_with_its_own_problems_not_its_users(
        versions: MapVersions) -> None:
    customers = json.loads((MAPS / "customers.json").read_text())
    with pytest.raises(MapDefinitionError) as refused:  # contacts look customers up: they would say it is missing
        await versions.change("customers", json.dumps({**customers, "conflict": "loudest"}), by="ana")
    assert [(p.map, p.field) for p in refused.value.problems] == [("customers", "conflict")]


async def test_a_valid_map_that_breaks_the_set_is_refused_naming_the_maps_it_breaks(
        versions: MapVersions, store: MemoryVersions) -> None:
    groups = json.loads((MAPS / "vendor-groups.json").read_text())
    groups["fno"]["key"] = ["dataAreaId", "GroupCode"]
    groups["fields"][0]["fno"] = "GroupCode"  # valid alone; vendors look groups up by VendorGroupId
    with pytest.raises(MapDefinitionError) as refused:
        await versions.change("vendor-groups", json.dumps(groups), by="ana")
    assert {(p.file, p.map) for p in refused.value.problems} == {
        (str(MAPS / "vendors.json"), "vendors"), (str(MAPS / "vendor-persons.json"), "vendor-persons")}
    assert store.rows == {}


async def test_the_body_must_be_a_map_of_the_name_it_is_sent_to(versions: MapVersions, store: MemoryVersions) -> None:
    for text, field in ((_vendors(name="customers"), "name"), ("[1, 2]", "body"), ("{oops", "body")):
        with pytest.raises(BadMapBody) as refused:
            await versions.change("vendors", text, by="ana")
        assert refused.value.field == field
    with pytest.raises(BodyTooLarge):
        await versions.change("vendors", _vendors(description="x" * MAX_UNITS), by="ana")
    assert store.rows == {}


async def test_a_stale_revision_is_refused(versions: MapVersions) -> None:
    with pytest.raises(StaleRevision) as stale:
        await versions.change("vendors", _vendors(), by="ana", expected=1)  # nothing stored yet: that is 0
    assert (stale.value.expected, stale.value.latest) == (1, 0)
    await versions.change("vendors", _vendors(), by="ana", expected=0)
    with pytest.raises(StaleRevision):
        await versions.change("vendors", _vendors(), by="bob", expected=0)


async def test_of_two_writers_of_the_same_revision_one_wins(versions: MapVersions, store: MemoryVersions) -> None:
    results = await asyncio.gather(versions.change("vendors", _vendors(title="Ana's"), by="ana"),
                                   versions.change("vendors", _vendors(title="Bob's"), by="bob"),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["MapRevision", "RevisionTaken"]
    assert list(store.rows["vendors"]) == [1]


async def test_a_restore_stores_an_earlier_body_as_the_next_revision(versions: MapVersions) -> None:
    await versions.change("vendors", _vendors(version="1.1.0"), by="ana")
    await versions.change("vendors", _vendors(version="1.2.0"), by="ana")
    restored = await versions.restore("vendors", 1, by="bob")
    assert (restored.revision, restored.version, restored.reason) == (3, "1.1.0", "restore of revision 1")
    assert restored.body == (await versions.revision("vendors", 1)).body
    with pytest.raises(RevisionNotFound):
        await versions.restore("vendors", 7, by="bob")
