"""Two maps on Dataverse's product table (product masters as families, variants as products): a row's change reaches
both (core.sync.ingest.target_maps), and each map's Dataverse filter keeps the row to its own map."""

from __future__ import annotations

from typing import Any

import pytest

from core.events.model import ChangeEvent
from core.maps import MapSet
from core.maps.loader import LoadedMap, load_maps
from core.sync.decide import Skip, Write, decide
from core.sync.ingest import target_maps
from tests.unit.sync.world import MAPS, T0

ROW = "0b5e2c9a-0000-4000-8000-0000000000d1"
PRODUCT_MAPS = ("product-masters", "distinct-products", "product-colors", "product-sizes")

# The product maps ship disabled: enabled here as their scenario enables them.
maps = MapSet([LoadedMap(item.map.model_copy(update={"enabled": True}) if item.map.name in PRODUCT_MAPS else item.map,
                         item.file) for item in load_maps([MAPS]).maps])


def _change() -> ChangeEvent:
    return ChangeEvent(event_id="dv-7", source="dataverse", entity="product", operation="update", record_id=ROW,
                       occurred_at=T0)


def _row(structure: int) -> dict[str, Any]:
    return {"productid": ROW, "productnumber": "D0100", "name": "T-shirt", "productstructure": structure}


def test_a_product_row_change_reaches_both_maps_on_the_table() -> None:
    assert {m.name for m in target_maps(_change(), maps)} == {"product-masters", "distinct-products"}


@pytest.mark.parametrize(("structure", "taken_by", "skipped_by"), [
    (2, "product-masters", "distinct-products"),  # a product family: the master
    (1, "distinct-products", "product-masters"),  # a product: a variant or distinct product
])
def test_each_row_is_synced_by_its_own_map_only(structure: int, taken_by: str, skipped_by: str) -> None:
    record = _row(structure)
    taken = decide(maps[taken_by], _change().model_copy(update={"map": taken_by}), record, None, ours=False, maps=maps)
    skipped = decide(maps[skipped_by], _change().model_copy(update={"map": skipped_by}), record, None, ours=False,
                     maps=maps)
    assert isinstance(taken, Write) and taken.target == "fno"
    # A row never synced is named by its row id.
    assert skipped == Skip("filtered out by the Dataverse filter of the map", f"dataverse:{ROW}")
