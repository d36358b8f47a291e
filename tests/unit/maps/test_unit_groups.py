"""A unit's required group, base unit and quantity are filled by dual-write's plugin from its unit class: a map writing
the class need not write them (core.maps.validation.FILLED_ON_CREATE); one writing neither is told what it misses."""

from core.maps import check_metadata
from core.maps.catalog import Column, EntitySchema
from core.maps.loader import LoadedMap


def _uom() -> EntitySchema:
    columns = [Column("uomid", "guid"), Column("name", "string", required=True),
               Column("msdyn_symbol", "string"), Column("msdyn_externalunitclassname", "string"),
               Column("uomscheduleid", "lookup", required=True, targets=("uomschedule",)),
               Column("baseuom", "lookup", required=True, targets=("uom",)),
               Column("quantity", "decimal", required=True)]
    return EntitySchema("dataverse", "uom", {c.name: c for c in columns}, entity_set="uoms",
                        keys=(("msdyn_symbol",),))


def _required_missing(shipped, *, with_class: bool) -> set[str]:
    units = shipped["units"]
    if not with_class:
        units = units.model_copy(update={"fields": [f for f in units.fields if f.fno != "UnitClass"]})
    problems = check_metadata([LoadedMap(units, "units.json")], dataverse={"uom": _uom()})
    return {p.field or "" for p in problems if "is not written by the map" in p.message}


def test_a_unit_map_writing_the_unit_class_leaves_the_group_to_the_plugin(shipped):
    assert _required_missing(shipped, with_class=True) == set()


def test_a_unit_map_without_the_unit_class_must_write_the_group_itself(shipped):
    assert _required_missing(shipped, with_class=False) == {"uomscheduleid", "baseuom", "quantity"}
