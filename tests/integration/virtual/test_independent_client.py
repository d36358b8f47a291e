"""An independent generic OData v4 client (PyPI `python-odata`) reads the service's `$metadata`, builds its entity
classes from it and pages every entity set, following `@odata.nextLink` on its own."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from odata import ODataService

from tests.integration.virtual.conftest import KEY, VirtualStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(vt: VirtualStack) -> ODataService:
    session = requests.Session()
    session.headers["x-vt-key"] = KEY
    session.headers["Prefer"] = "odata.maxpagesize=7"  # small pages: the client has to follow the next links
    return ODataService(vt.root, reflect_entities=True, session=session)


def test_client_reflects_every_entity_set(service: ODataService, vt: VirtualStack) -> None:
    with vt.client() as client:
        names = {s["name"] for s in client.get("").json()["value"]}
    assert set(service.entities) == names


def test_client_pages_every_entity_set_to_the_end(service: ODataService, vt: VirtualStack) -> None:
    for name, entity in service.entities.items():
        rows = list(service.query(entity))
        with vt.client() as client:
            expected = int(client.get(f"{name}/$count").text)
        assert len(rows) == expected > 0, name
        key = {
            "Products": "ProductId",
            "ReadOnlyProducts": "ProductId",
            "OrderLines": "OrderLineId",
            "FnoCustomerGroups": "Id",
            "Warehouses": "WarehouseId",
            "StrictWarehouses": "WarehouseId",
        }[name]
        assert len({getattr(r, key) for r in rows}) == expected, name


def test_client_filters_and_reads_typed_values(service: ODataService, vt: VirtualStack) -> None:
    product = service.entities["Products"]
    audio = list(service.query(product).filter(product.Category == "Audio"))
    expected = vt.sql("SELECT count(*) AS n FROM products WHERE category = 'Audio'")[0]["n"]
    assert len(audio) == expected > 7 and {p.Category for p in audio} == {"Audio"}
    assert all(isinstance(p.Price, Decimal) for p in audio)
    first = audio[0]
    again = service.query(product).get(first.ProductId)
    assert again.Name == first.Name
