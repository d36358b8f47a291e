"""The running map set as files overlaid by stored revisions (core.maps.overlay): pure, over the shipped maps."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from core.connectors import jsonwire
from core.maps import MapDefinitionError, MapSet, StoredMap, load_maps, overlay
from tests.unit.maps.conftest import SHIPPED


def _text(shipped: str, **changes: object) -> str:
    """A shipped map's JSON with some settings changed."""
    definition = json.loads((SHIPPED / f"{shipped}.json").read_text(), parse_float=Decimal)
    return jsonwire.dumps({**definition, **changes}).decode()


def test_a_stored_revision_replaces_the_file_of_its_map_in_place() -> None:
    files = load_maps([SHIPPED])
    result = overlay(files, [StoredMap("vendors", 3, _text("vendors", title="Vendors, stored"))])
    assert [m.map.name for m in result.maps] == [m.map.name for m in files.maps]  # same order, nothing added
    vendors = next(m for m in result.maps if m.map.name == "vendors")
    assert (vendors.map.title, vendors.file, vendors.revision) == ("Vendors, stored", "stored revision 3", 3)
    assert result.problems == []
    customers = next(m for m in result.maps if m.map.name == "customers")
    assert customers.revision is None and customers.file.endswith("customers.json")


def test_a_stored_map_no_file_has_is_added() -> None:
    maps = MapSet.load([SHIPPED], [StoredMap("vendor-groups-copy", 1, _text(
        "vendor-groups", name="vendor-groups-copy", title="A second pairing, stored only"))])
    assert maps["vendor-groups-copy"].title == "A second pairing, stored only"
    assert maps.loaded("vendor-groups-copy").file == "stored revision 1"
    assert len(maps) == len(load_maps([SHIPPED]).maps) + 1


def test_the_overlay_is_validated_as_a_set_naming_the_stored_revision() -> None:
    # Valid alone, but vendors' lookup names a map the stored vendor-groups no longer pairs the same way.
    broken = _text("vendor-groups", fno={"entity_set": "VendorGroups", "key": ["dataAreaId", "GroupCode"]})
    with pytest.raises(MapDefinitionError) as refused:
        MapSet.load([SHIPPED], [StoredMap("vendor-groups", 2, broken)])
    where = {(p.file, p.map) for p in refused.value.problems}
    assert ("stored revision 2", "vendor-groups") in where
    assert any(p.map == "vendors" for p in refused.value.problems)  # the set, not the map alone


def test_a_stored_text_that_is_not_a_map_of_its_name_is_a_problem() -> None:
    result = overlay(load_maps([SHIPPED]), [StoredMap("vendors", 4, "{not json"),
                                            StoredMap("customers", 2, _text("vendors"))])
    assert {(p.file, p.map, p.field) for p in result.problems} >= {
        ("stored revision 4", None, None), ("stored revision 2", "customers", "name")}
    names = [m.map.name for m in result.maps]
    assert "customers" not in names and "vendors" not in names  # neither falls back to its file
