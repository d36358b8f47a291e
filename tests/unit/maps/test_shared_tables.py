"""Two maps onto one Dataverse table (product masters and variants onto `product`): both take the table's changes,
so each needs a Dataverse filter, and not the same one."""

from typing import Any

from core.maps import validate_maps
from core.maps.loader import LoadedMap
from core.maps.model import TableMap


def _map(name: str, dv_filter: str | None) -> LoadedMap:
    data: dict[str, Any] = {
        "name": name, "version": "1.0.0", "primary": "fno",
        "fno": {"entity_set": f"{name.title()}s", "key": ["ProductNumber"]},
        "dataverse": {"table": "product", "entity_set": "products", "primary_id": "productid",
                      "key": ["productnumber"], **({"filter": dv_filter} if dv_filter else {})},
        "fields": [
            {"fno": "ProductNumber", "dataverse": "productnumber", "direction": "both", "type": "string"},
            {"fno": None, "dataverse": "productstructure", "direction": "to_dataverse", "type": "choice",
             "transform": [{"type": "constant", "value": 1}]},
        ],
    }
    return LoadedMap(TableMap.model_validate(data), f"{name}.json")


def _shared_problems(*maps: LoadedMap) -> list[tuple[str, str | None, str]]:
    return [(p.map, p.field, p.message) for p in validate_maps(list(maps)) if "Dataverse table" in p.message]


def test_two_maps_told_apart_by_their_filters_are_valid():
    assert _shared_problems(_map("variants", "productstructure eq 1"), _map("masters", "productstructure eq 2")) == []


def test_a_map_without_a_filter_on_a_shared_table_is_named_with_the_other_map():
    problems = _shared_problems(_map("variants", None), _map("masters", "productstructure eq 2"))
    assert problems == [("variants", "dataverse.filter",
                         "maps 'masters' sync Dataverse table 'product' with other F&O entities, and changes of "
                         "its rows reach every one of them: give each a dataverse.filter that tells its rows apart")]


def test_two_maps_with_the_same_filter_cannot_be_told_apart():
    # Spacing differs: the filters are compared as parsed, not as text.
    problems = _shared_problems(_map("variants", "productstructure eq 2"), _map("masters", "productstructure  eq  2"))
    assert [p[0] for p in problems] == ["variants", "masters"]
    assert problems[1] == ("masters", "dataverse.filter",
                           "the same filter as map 'variants' on Dataverse table 'product': the maps cannot be "
                           "told apart")


def test_a_copy_of_a_map_pairing_the_same_entity_writes_the_same_row_and_needs_no_filter():
    copy = _map("variants", None)
    copy = LoadedMap(copy.map.model_copy(update={"name": "variants-copy"}), "stored revision 1")
    assert _shared_problems(_map("variants", None), copy) == []


def test_a_map_alone_on_its_table_needs_no_filter():
    assert _shared_problems(_map("variants", None)) == []


def test_a_disabled_map_takes_no_changes_so_it_needs_no_filter():
    disabled = _map("masters", None)
    disabled = LoadedMap(disabled.map.model_copy(update={"enabled": False}), disabled.file)
    assert _shared_problems(_map("variants", None), disabled) == []


def test_the_shipped_maps_are_told_apart_once_all_are_enabled(shipped):
    # They ship disabled; a deployment enables them by scenario, so check them as if all were on.
    enabled = [LoadedMap(shipped[name].model_copy(update={"enabled": True}), shipped.file_of(name))
               for name in shipped]
    assert [(p.map, p.message) for p in validate_maps(enabled) if "Dataverse table" in p.message] == []
    on_product = {name for name in shipped if shipped[name].dataverse.table == "product"}
    assert {"product-masters", "distinct-products"} <= on_product
