"""Create, update and delete through the service, each seen in the source itself (SQLite, F&O, Table Storage),
with the ids Dataverse would keep; and the refusals of writes a definition or a value does not allow."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from azure.data.tables.aio import TableClient

from core.connectors import jsonwire
from tests.integration.virtual.conftest import VirtualStack

pytestmark = pytest.mark.integration
ORDER_LINES_NS = uuid.UUID("5b4e1f0a-6a53-4f5e-9d3c-0c6f1e2a7b10")
GROUPS_NS = uuid.UUID("9a0f6c1e-3b2d-4c7a-8e51-2f4d6b8a0c31")


def body(answer: httpx.Response) -> dict[str, Any]:
    return {k: v for k, v in json.loads(answer.content, parse_float=Decimal).items() if not k.startswith("@")}


def test_sql_create_update_delete_with_a_guid_column(vt: VirtualStack) -> None:
    new_id = uuid.uuid4()
    with vt.client() as client:
        created = client.post(
            "Products",
            headers={"Content-Type": "application/json"},
            content=jsonwire.dumps(
                {
                    "ProductId": str(new_id),
                    "ItemNumber": "VT-0001",
                    "Name": "Virtual cable",
                    "Price": Decimal("1234.5678901234"),
                    "InStock": 3,
                    "Discontinued": False,
                    "ModifiedOn": "2026-03-01T10:00:00+01:00",
                    "Barcode": 9_007_199_254_740_993,
                }
            ),
        )
        assert created.status_code == 201, created.text
        assert created.headers["Location"].endswith(f"/api/odata/Products({new_id})")
        assert body(created)["Price"] == Decimal("1234.5678901234")
        stored = vt.sql("SELECT * FROM products WHERE item_number = 'VT-0001'")
        assert len(stored) == 1 and uuid.UUID(hex=stored[0]["product_id"]) == new_id
        assert stored[0]["price"] == "1234.5678901234"  # every digit, as text on SQLite
        assert stored[0]["modified_on"].startswith("2026-03-01 09:00:00")  # UTC
        assert stored[0]["barcode"] == 9_007_199_254_740_993  # above 2**53: no float on the way

        patched = client.patch(
            f"Products({new_id})", json={"Name": "Renamed", "Price": "0.0000000001", "Category": None}
        )
        assert patched.status_code == 204, patched.text
        stored = vt.sql("SELECT name, price, category FROM products WHERE item_number = 'VT-0001'")
        assert stored == [{"name": "Renamed", "price": "0.0000000001", "category": None}]
        assert body(client.get(f"Products({new_id})"))["Price"] == Decimal("1E-10")

        assert client.delete(f"Products({new_id})").status_code == 204
        assert vt.sql("SELECT * FROM products WHERE item_number = 'VT-0001'") == []
        assert client.get(f"Products({new_id})").status_code == 404
        assert client.delete(f"Products({new_id})").status_code == 404
        assert client.patch(f"Products({new_id})", json={"Name": "x"}).status_code == 404


def test_sql_create_without_an_id_gets_one(vt: VirtualStack) -> None:
    with vt.client() as client:
        created = client.post("Products", json={"ItemNumber": "VT-0002", "Name": "No id given"})
        assert created.status_code == 201
        made = uuid.UUID(body(created)["ProductId"])
        assert (
            uuid.UUID(hex=vt.sql("SELECT product_id FROM products WHERE item_number = 'VT-0002'")[0]["product_id"])
            == made
        )
        assert client.delete(f"Products({made})").status_code == 204


def test_sql_composite_key_create_update_delete(vt: VirtualStack) -> None:
    expected_id = str(uuid.uuid5(ORDER_LINES_NS, json.dumps(["SO-9999", "3"], separators=(",", ":"))))
    with vt.client() as client:
        created = client.post(
            "OrderLines",
            json={
                "OrderNumber": "SO-9999",
                "LineNumber": 3,
                "ItemNumber": "P000001",
                "Quantity": "2.5000",
                "Amount": "49.9900000001",
                "OrderLineId": str(uuid.uuid4()),
            },
        )  # Dataverse's proposal: ignored
        assert created.status_code == 201, created.text
        assert body(created)["OrderLineId"] == expected_id
        assert client.get(f"OrderLines({expected_id})").status_code == 200  # the reverse index knows it
        assert client.patch(f"OrderLines({expected_id})", json={"Quantity": 7}).status_code == 204
        assert vt.sql("SELECT quantity FROM order_lines WHERE order_number = 'SO-9999'") == [{"quantity": "7"}]
        changed_key = client.patch(f"OrderLines({expected_id})", json={"LineNumber": 4})
        assert changed_key.status_code == 400 and changed_key.json()["invalid_params"][0]["name"] == "LineNumber"
        duplicate = client.post("OrderLines", json={"OrderNumber": "SO-9999", "LineNumber": 3})
        assert duplicate.status_code == 409
        assert client.delete(f"OrderLines({expected_id})").status_code == 204
        assert vt.sql("SELECT * FROM order_lines WHERE order_number = 'SO-9999'") == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"ItemNumber": "X"}, "Name"),  # Nullable=false
        ({"ItemNumber": "X", "Name": "x", "Colour": "red"}, "Colour"),
        ({"ItemNumber": "X", "Name": "x", "Price": "12.34567890123"}, "Price"),  # scale 10
        ({"ItemNumber": "X", "Name": "x", "InStock": 2.5}, "InStock"),
        ({"ItemNumber": "X", "Name": "x", "InStock": 3_000_000_000}, "InStock"),
        ({"ItemNumber": "X", "Name": "x", "Discontinued": "yes"}, "Discontinued"),
        ({"ItemNumber": "X", "Name": "x", "ModifiedOn": "last tuesday"}, "ModifiedOn"),
        ({"ItemNumber": "X" * 21, "Name": "x"}, "ItemNumber"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_property(vt: VirtualStack, payload: dict[str, Any], field: str) -> None:
    with vt.client() as client:
        answer = client.post("Products", json=payload)
    assert answer.status_code == 400, answer.text
    assert answer.json()["invalid_params"][0]["name"] == field
    assert vt.sql("SELECT count(*) AS n FROM products WHERE item_number LIKE 'X%'")[0]["n"] == 0


def test_operations_the_definition_does_not_allow_are_405(vt: VirtualStack) -> None:
    one = vt.sql("SELECT product_id FROM products LIMIT 1")[0]["product_id"]
    with vt.client() as client:
        assert client.get(f"ReadOnlyProducts({uuid.UUID(hex=one)})").status_code == 200
        for answer in (
            client.post("ReadOnlyProducts", json={"ItemNumber": "R", "Name": "r"}),
            client.patch(f"ReadOnlyProducts({uuid.UUID(hex=one)})", json={"Name": "r"}),
            client.delete(f"ReadOnlyProducts({uuid.UUID(hex=one)})"),
        ):
            assert answer.status_code == 405
            assert "allows read" in answer.json()["detail"]
    assert vt.sql("SELECT count(*) AS n FROM products WHERE product_id = :id", id=one)[0]["n"] == 1


def test_fno_create_update_delete_seen_in_fno(vt: VirtualStack) -> None:
    fno = httpx.Client(base_url=vt.fno.data_url, headers=vt.fno.headers())
    address = "CustomerGroups(dataAreaId='demf',CustomerGroupId='VT01')?cross-company=true"
    expected_id = str(uuid.uuid5(GROUPS_NS, json.dumps(["demf", "VT01"], separators=(",", ":"))))
    with vt.client() as client:
        created = client.post(
            "FnoCustomerGroups", json={"dataAreaId": "demf", "CustomerGroupId": "VT01", "Description": "Virtual group"}
        )
        assert created.status_code == 201, created.text
        assert body(created)["Id"] == expected_id
        assert fno.get(address).json()["Description"] == "Virtual group"
        assert client.patch(f"FnoCustomerGroups({expected_id})", json={"Description": "Changed"}).status_code == 204
        assert fno.get(address).json()["Description"] == "Changed"
        assert client.delete(f"FnoCustomerGroups({expected_id})").status_code == 204
        assert fno.get(address).status_code == 404
        assert client.get(f"FnoCustomerGroups({expected_id})").status_code == 404


def test_tables_create_update_delete_seen_in_table_storage(vt: VirtualStack) -> None:
    async def entity() -> dict[str, Any] | None:
        async with TableClient.from_connection_string(vt.tables, "vtwarehouses") as table:
            found = [
                e
                async for e in table.query_entities(
                    "PartitionKey eq @p and RowKey eq @r", parameters={"p": "LATAM", "r": "SAO01"}
                )
            ]
            return dict(found[0]) if found else None

    with vt.client() as client:
        created = client.post(
            "Warehouses",
            json={
                "Region": "LATAM",
                "Code": "SAO01",
                "Name": "Sao Paulo",
                "Capacity": 4000,
                "Active": True,
                "OpenedOn": "2025-05-05T00:00:00Z",
            },
        )
        assert created.status_code == 201, created.text
        row_id = body(created)["WarehouseId"]
        stored = asyncio.run(entity())
        assert stored is not None and stored["Name"] == "Sao Paulo" and stored["Capacity"] == 4000
        assert client.patch(f"Warehouses({row_id})", json={"Capacity": 4500, "Name": None}).status_code == 204
        stored = asyncio.run(entity())
        assert stored is not None and stored["Capacity"] == 4500 and "Name" not in stored
        assert client.delete(f"Warehouses({row_id})").status_code == 204
        assert asyncio.run(entity()) is None
        assert client.get(f"Warehouses({row_id})").status_code == 404
