"""Virtual tables end to end (issue 16): the Dataverse simulator's OData v4 Data Provider calls the function app's
OData endpoint (/api/odata/) of a running host, which reads and writes the sources live. Through the Dataverse Web
API only, a SQLite-backed table (Products) and an F&O-backed table (FnoCustomerGroups) are listed, filtered, read,
created, updated and deleted, and each change is seen in the source itself (the SQLite file, the F&O simulator).

The stack is this module's own: its host reads a SQLite database of the test's own (the shared
.devstack/virtualtables.db of `make run` is left alone), and the demo tables are registered the way `make run` does
(devstack/virtualtables.py: an msdyn_odatav4ds row with the key as a header request parameter, EntityDefinitions)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.virtual.catalog import load_folder
from devstack.virtualdata import create_sql
from devstack.virtualtables import local_demo, register_definitions
from tests.e2e.conftest import Stack, running_stack
from tests.fixtures.devhost import RunningHost

ROOT = Path(__file__).resolve().parents[2]
VT_KEY = "e2e-vt-key"


@pytest.fixture(scope="module")
def sql_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('vt') / 'virtualtables.db'}"
    create_sql(url, products=120, order_lines=20)
    return url


@pytest.fixture(scope="module")
def stack(azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost], sql_url: str) -> Iterator[Stack]:
    with running_stack(
        azurite,
        servicebus_emulator,
        devhost,
        dataverse_flags=(),
        VIRTUAL_TABLES_KEY=VT_KEY,
        VIRTUAL_TABLES_SQL_URL=sql_url,
        VIRTUAL_TABLES_PATH=str(ROOT / "virtualtables"),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def sets(stack: Stack) -> dict[str, str]:
    definitions = [d for d in load_folder(ROOT / "virtualtables") if d.entity_set in ("Products", "FnoCustomerGroups")]
    return register_definitions(stack.dv, f"{stack.host.url}/api/odata/", VT_KEY, definitions)


def sql_row(url: str, product_id: str) -> dict[str, Any] | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            row = (
                connection.execute(
                    sa.text("SELECT name, price, in_stock FROM products WHERE product_id = :id"), {"id": product_id}
                )
                .mappings()
                .first()
            )
            if row is None:  # stored as the GUID's hex by SQLAlchemy's Uuid type on SQLite
                row = (
                    connection.execute(
                        sa.text("SELECT name, price, in_stock FROM products WHERE product_id = :id"),
                        {"id": uuid.UUID(product_id).hex},
                    )
                    .mappings()
                    .first()
                )
            return dict(row) if row is not None else None
    finally:
        engine.dispose()


def created_id(response: httpx.Response) -> str:
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def test_the_demo_tables_are_virtual_tables_of_the_engines_endpoint(stack: Stack, sets: dict[str, str]) -> None:
    assert sets == {"Products": "dwvt_products", "FnoCustomerGroups": "dwvt_fnocustomergroups"}
    entity = stack.dv.get("EntityDefinitions(LogicalName='dwvt_product')").json()
    assert entity["TableType"] == "Virtual" and entity["ExternalCollectionName"] == "Products"
    source = stack.dv.get(f"msdyn_odatav4ds({entity['DataSourceId']})").json()
    assert source["msdyn_uri"] == f"{stack.host.url}/api/odata/"
    assert (source["msdyn_parameter1name"], source["msdyn_isparameter1header"]) == ("x-vt-key", True)


def test_sqlite_rows_listed_paged_filtered_and_read_through_dataverse(stack: Stack, sets: dict[str, str]) -> None:
    products = sets["Products"]
    first = stack.dv.get(
        products,
        params={"$select": "dwvt_name,dwvt_price", "$count": "true"},
        headers={"Prefer": "odata.maxpagesize=50"},
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["@odata.count"] == 120 and len(body["value"]) == 50 and "@odata.nextLink" in body
    seen = [r["dwvt_productid"] for r in body["value"]]
    link = body["@odata.nextLink"]
    while link:
        page = stack.dv.get(link, headers={"Prefer": "odata.maxpagesize=50"}).json()
        seen += [r["dwvt_productid"] for r in page["value"]]
        link = page.get("@odata.nextLink")
    assert len(seen) == len(set(seen)) == 120

    cheap = stack.dv.get(
        products, params={"$select": "dwvt_name,dwvt_price", "$filter": "dwvt_price lt 2000", "$orderby": "dwvt_price"}
    )
    assert cheap.status_code == 200, cheap.text
    prices = [Decimal(str(r["dwvt_price"])) for r in cheap.json()["value"]]
    assert prices and prices == sorted(prices) and all(p < 2000 for p in prices)

    one = stack.dv.get(f"{products}({seen[7]})", params={"$select": "dwvt_name,dwvt_itemnumber"})
    assert one.status_code == 200, one.text
    assert one.json()["dwvt_productid"] == seen[7] and one.json()["dwvt_name"]
    missing = stack.dv.get(f"{products}({uuid.uuid4()})")
    assert missing.status_code == 404

    # Edm.Decimal with every digit, Dataverse's answer against the endpoint's own.
    through_dataverse = json.loads(stack.dv.get(f"{products}({seen[7]})").content, parse_float=Decimal)
    direct = httpx.get(f"{stack.host.url}/api/odata/Products({seen[7]})", headers={"x-vt-key": VT_KEY}, timeout=30)
    assert through_dataverse["dwvt_price"] == json.loads(direct.content, parse_float=Decimal)["Price"]


def test_sqlite_rows_created_updated_and_deleted_through_dataverse(
    stack: Stack, sets: dict[str, str], sql_url: str
) -> None:
    products = sets["Products"]
    new_id = str(uuid.uuid4())
    row_id = created_id(
        stack.dv.post(
            products,
            json={
                "dwvt_productid": new_id,
                "dwvt_itemnumber": "E2E-VT-1",
                "dwvt_name": "Made in Dataverse",
                "dwvt_price": 12.5,
                "dwvt_instock": 3,
            },
        )
    )
    assert row_id == new_id
    stored = sql_row(sql_url, new_id)
    assert stored is not None and stored["name"] == "Made in Dataverse" and stored["in_stock"] == 3

    updated = stack.dv.patch(f"{products}({new_id})", json={"dwvt_name": "Renamed in Dataverse", "dwvt_instock": 9})
    assert updated.status_code == 204, updated.text
    stored = sql_row(sql_url, new_id)
    assert stored is not None and stored["name"] == "Renamed in Dataverse" and stored["in_stock"] == 9
    assert stack.dv.get(f"{products}({new_id})").json()["dwvt_name"] == "Renamed in Dataverse"

    assert stack.dv.delete(f"{products}({new_id})").status_code == 204
    assert sql_row(sql_url, new_id) is None
    assert stack.dv.get(f"{products}({new_id})").status_code == 404


def fno_group(stack: Stack, company: str, group: str) -> dict[str, Any] | None:
    response = stack.fo.get(
        f"CustomerGroups(dataAreaId='{company}',CustomerGroupId='{group}')", params={"cross-company": "true"}
    )
    return response.json() if response.status_code == 200 else None


def test_fno_rows_through_dataverse_and_the_change_in_fno(stack: Stack, sets: dict[str, str]) -> None:
    groups = sets["FnoCustomerGroups"]
    listed = stack.dv.get(
        groups,
        params={
            "$select": "dwvt_customergroupid,dwvt_description,dwvt_dataareaid",
            "$filter": "dwvt_dataareaid eq 'usmf'",
            "$count": "true",
        },
    )
    assert listed.status_code == 200, listed.text
    rows = listed.json()["value"]
    assert rows and all(r["dwvt_dataareaid"] == "usmf" for r in rows)
    some = rows[0]
    one = stack.dv.get(f"{groups}({some['dwvt_fnocustomergroupid']})")
    assert one.status_code == 200 and one.json()["dwvt_customergroupid"] == some["dwvt_customergroupid"]

    code = f"V{uuid.uuid4().hex[:5].upper()}"
    row_id = created_id(
        stack.dv.post(
            groups, json={"dwvt_dataareaid": "usmf", "dwvt_customergroupid": code, "dwvt_description": "From DV"}
        )
    )
    made = fno_group(stack, "usmf", code)
    assert made is not None and made["Description"] == "From DV"

    changed = stack.dv.patch(f"{groups}({row_id})", json={"dwvt_description": "Changed in DV"})
    assert changed.status_code == 204, changed.text
    assert (fno_group(stack, "usmf", code) or {}).get("Description") == "Changed in DV"
    assert stack.dv.get(f"{groups}({row_id})").json()["dwvt_description"] == "Changed in DV"

    assert stack.dv.delete(f"{groups}({row_id})").status_code == 204
    assert fno_group(stack, "usmf", code) is None


def test_the_make_run_registration_prints_a_working_metadata_curl(
    stack: Stack, sets: dict[str, str], sql_url: str, azurite: str
) -> None:
    settings = {
        "VIRTUAL_TABLES_KEY": VT_KEY,
        "VIRTUAL_TABLES_KEY_HEADER": "x-vt-key",
        "VIRTUAL_TABLES_SQL_URL": sql_url,
        "TABLE_STORAGE_CONNECTION": azurite,
    }
    lines = local_demo(settings, stack.dataverse.base_url, stack.host.url, stack.dataverse.token())
    curl = next(line for line in lines if "$metadata" in line)
    header, url = re.fullmatch(r"\s*\$metadata\s+curl -H '([^']+)' '([^']+)'", curl).groups()  # type: ignore[union-attr]
    name, _, value = header.partition(": ")
    metadata = httpx.get(url, headers={name: value}, timeout=30)
    assert metadata.status_code == 200 and 'EntitySet Name="Products"' in metadata.text
    assert httpx.get(url, timeout=30).status_code == 401  # the key is what opens it
    # Every shipped definition is now a Dataverse table; the Table Storage one reads its demo rows.
    assert "Warehouses" in "\n".join(lines) and "OrderLines" in "\n".join(lines)
    warehouses = stack.dv.get("dwvt_warehouses", params={"$select": "dwvt_name", "$count": "true"})
    assert warehouses.status_code == 200, warehouses.text
    assert warehouses.json()["@odata.count"] == 8
    lines_count = stack.dv.get("dwvt_orderlines", params={"$count": "true", "$top": "1"}).json()["@odata.count"]
    assert lines_count == 20


def test_the_key_as_a_query_parameter_and_client_side_paging_work_too(stack: Stack, sets: dict[str, str]) -> None:
    """The other way to configure the data source: the key as the `vtkey` query-string parameter and Dataverse paging
    with $top/$skip itself."""
    products = [d for d in load_folder(ROOT / "virtualtables") if d.entity_set == "Products"]
    other = register_definitions(
        stack.dv,
        f"{stack.host.url}/api/odata/",
        VT_KEY,
        products,
        key_header="vtkey",
        as_header=False,
        server_paging=False,
        source_name="e2e products (key in the query, client paging)",
        prefix="dwvq",
    )
    entity_set = other["Products"]
    first = stack.dv.get(
        entity_set, params={"$select": "dwvq_name", "$count": "true"}, headers={"Prefer": "odata.maxpagesize=40"}
    )
    assert first.status_code == 200, first.text
    ids = [r["dwvq_productid"] for r in first.json()["value"]]
    link = first.json().get("@odata.nextLink")
    while link:
        page = stack.dv.get(link, headers={"Prefer": "odata.maxpagesize=40"}).json()
        ids += [r["dwvq_productid"] for r in page["value"]]
        link = page.get("@odata.nextLink")
    assert first.json()["@odata.count"] == len(ids) == len(set(ids))
    # The same rows as the header-keyed, server-paged table.
    same = stack.dv.get(sets["Products"], params={"$select": "dwvt_name", "$count": "true"}).json()["@odata.count"]
    assert same == len(ids)
