"""What deployment registers, decided from the maps alone (no server): union per table, directions,
disabled maps, the navigation-property-to-column step."""

from __future__ import annotations

from core.maps import FieldMapping, MapSet, load_maps
from core.maps.loader import LoadedMap
from core.ops.deploy import dataverse_plan, fno_plan

SHIPPED = {loaded.map.name: loaded for loaded in load_maps(["maps"]).maps}


def variant(name: str, base: str = "customers", **changes: object) -> LoadedMap:
    return LoadedMap(SHIPPED[base].map.model_copy(update={"name": name, **changes}), f"{name}.json")


def plan_of(*loaded: LoadedMap) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    return {p.table: (p.attributes, p.key_attributes) for p in dataverse_plan(MapSet(loaded))}


def test_maps_sharing_a_table_get_one_set_of_steps_with_the_union_of_columns() -> None:
    extra = variant("customers-web", fields=[
        FieldMapping(fno="CustomerAccount", dataverse="accountnumber", direction="both", type="string"),
        FieldMapping(fno="WebSite", dataverse="websiteurl", direction="to_fno", type="string")], lookups=[])
    alone = plan_of(SHIPPED["customers"])["account"][0]
    both = plan_of(SHIPPED["customers"], extra)
    assert list(both) == ["account"]
    assert set(both["account"][0]) == set(alone) | {"websiteurl"}
    assert list(both["account"][0]) == sorted(both["account"][0])
    assert both["account"][1] == ("accountnumber", "msdyn_company")


def test_only_enabled_maps_that_send_to_fno_get_steps() -> None:
    disabled = variant("customers", enabled=False)
    one_way = variant("customers-one-way", fields=[
        FieldMapping(fno="CustomerAccount", dataverse="accountnumber", direction="to_dataverse", type="string"),
        FieldMapping(fno="OrganizationName", dataverse="name", direction="to_dataverse", type="string")],
        lookups=[])
    assert plan_of(disabled) == {}
    assert plan_of(one_way) == {}
    # ... but the one-way map still activates its F&O data events, and the disabled one does not.
    assert fno_plan(MapSet([one_way])) == ["CustomersV3.Create", "CustomersV3.Update", "CustomersV3.Delete"]
    assert fno_plan(MapSet([disabled])) == []


def test_filter_columns_are_watched_even_when_written_as_constants() -> None:
    # customertypecode is only ever written to Dataverse (a constant), but it is the column of the map's
    # Dataverse filter: a row entering the filter is a change to sync, and the image must carry it.
    attributes = plan_of(SHIPPED["customers"])["account"][0]
    assert "customertypecode" in attributes
    assert "description" in attributes  # to_fno only, still watched


def test_lookup_navigation_properties_become_their_columns() -> None:
    plan = dataverse_plan(MapSet([SHIPPED["contacts"]]), {"contact": {"parentcustomerid_account": "parentcustomerid"}})
    assert "parentcustomerid" in plan[0].attributes
    assert "parentcustomerid_account" not in plan[0].attributes


def test_a_table_with_an_online_map_gets_synchronous_steps() -> None:
    online = variant("customers", online=True)
    by_table = {p.table: p.online for p in dataverse_plan(MapSet([online, SHIPPED["contacts"]]))}
    assert by_table == {"account": True, "contact": False}
    # One online map of a shared table makes the table's steps synchronous; the others are queued from there.
    shared = {p.table: p.online for p in dataverse_plan(MapSet([SHIPPED["customers"],
                                                                 variant("customers-online", online=True)]))}
    assert shared == {"account": True}
