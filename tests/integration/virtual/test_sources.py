"""The F&O and Table Storage sources through the service: reads with pushed-down and finished-here filters, the
refusal of what cannot be served within the bound, and the GUID round trip of composite keys."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from devstack.virtualdata import WAREHOUSES
from tests.integration.virtual.conftest import VirtualStack

pytestmark = pytest.mark.integration
GROUPS_NS = uuid.UUID("9a0f6c1e-3b2d-4c7a-8e51-2f4d6b8a0c31")
WAREHOUSES_NS = uuid.UUID("2c8d4e6f-1a3b-4d5c-9e7f-6a8b0c2d4e51")
ORDER_LINES_NS = uuid.UUID("5b4e1f0a-6a53-4f5e-9d3c-0c6f1e2a7b10")


def uuid5(namespace: uuid.UUID, *values: object) -> str:
    """The documented derivation, written out independently of core.virtual.keys."""
    return str(uuid.uuid5(namespace, json.dumps([str(v) for v in values], separators=(",", ":"))))


def all_rows(vt: VirtualStack, entity_set: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with vt.client() as client:
        url: str | None = vt.root + entity_set
        while url:
            answer = client.get(url, params=params)
            assert answer.status_code == 200, answer.text
            rows += answer.json()["value"]
            url, params = answer.json().get("@odata.nextLink"), None
    return rows


def fno_groups(vt: VirtualStack) -> list[dict[str, Any]]:
    answer = httpx.get(vt.fno.data_url + "CustomerGroups", headers=vt.fno.headers(), params={"cross-company": "true"})
    return list(answer.json()["value"])


# ---- F&O ----------------------------------------------------------------------------------------------------------


def test_fno_rows_of_every_company_with_composite_key_guids(vt: VirtualStack) -> None:
    rows = all_rows(vt, "FnoCustomerGroups", {"$select": "dataAreaId,CustomerGroupId"})
    direct = fno_groups(vt)
    assert len(rows) == len(direct) > 4
    assert len({r["dataAreaId"] for r in rows}) > 1  # cross-company
    for row in rows:
        assert row["Id"] == uuid5(GROUPS_NS, row["dataAreaId"], row["CustomerGroupId"])
    assert len({r["Id"] for r in rows}) == len(rows)  # one group id in two companies: two ids


def test_fno_guid_round_trip(vt: VirtualStack) -> None:
    rows = all_rows(vt, "FnoCustomerGroups")
    with vt.client() as client:
        for row in rows:
            again = client.get(f"FnoCustomerGroups({row['Id']})")
            assert again.status_code == 200, again.text
            assert {k: v for k, v in again.json().items() if not k.startswith("@")} == row


def test_fno_text_functions_go_as_wildcards_unless_the_text_holds_one(vt: VirtualStack) -> None:
    direct = fno_groups(vt)
    for expression, keep in [
        ("startswith(Description,'whole')", lambda d: d.lower().startswith("whole")),
        ("endswith(Description,'S')", lambda d: d.lower().endswith("s")),
        ("not contains(Description,'customer')", lambda d: "customer" not in d.lower()),
        ("contains(Description,'*')", lambda d: "*" in d),
    ]:
        wanted = sorted((g["dataAreaId"], g["CustomerGroupId"]) for g in direct if keep(g.get("Description") or ""))
        rows = all_rows(vt, "FnoCustomerGroups", {"$filter": expression})
        assert sorted((r["dataAreaId"], r["CustomerGroupId"]) for r in rows) == wanted, expression


def test_fno_filters_pushed_and_finished_here(vt: VirtualStack) -> None:
    direct = fno_groups(vt)
    usmf = sorted(g["CustomerGroupId"] for g in direct if g["dataAreaId"] == "usmf")
    rows = all_rows(vt, "FnoCustomerGroups", {"$filter": "dataAreaId eq 'usmf'", "$orderby": "CustomerGroupId"})
    assert [r["CustomerGroupId"] for r in rows] == usmf
    wanted = sorted(
        (g["dataAreaId"], g["CustomerGroupId"]) for g in direct if "customer" in (g.get("Description") or "").lower()
    )
    rows = all_rows(vt, "FnoCustomerGroups", {"$filter": "contains(Description,'customer')", "$count": "true"})
    assert sorted((r["dataAreaId"], r["CustomerGroupId"]) for r in rows) == wanted
    with vt.client() as client:
        counted = client.get(
            "FnoCustomerGroups", params={"$filter": "dataAreaId ne 'usmf'", "$count": "true", "$top": "1"}
        )
    assert counted.json()["@odata.count"] == sum(1 for g in direct if g["dataAreaId"] != "usmf")


# ---- Table Storage ------------------------------------------------------------------------------------------------


def test_tables_rows_and_guid_round_trip_with_a_quote_in_the_key(vt: VirtualStack) -> None:
    rows = all_rows(vt, "Warehouses")
    assert sorted((r["Region"], r["Code"]) for r in rows) == sorted((w[0], w[1]) for w in WAREHOUSES)
    with vt.client() as client:
        for row in rows:
            assert row["WarehouseId"] == uuid5(WAREHOUSES_NS, row["Region"], row["Code"])
            again = client.get(f"Warehouses({row['WarehouseId']})").json()
            assert again["Code"] == row["Code"] and again["Capacity"] == row["Capacity"]
        assert any("'" in r["Code"] for r in rows)


def test_tables_filters_pushed_and_finished_here(vt: VirtualStack) -> None:
    eu = all_rows(vt, "Warehouses", {"$filter": "Region eq 'EU' and Capacity ge 9000"})
    assert sorted(r["Code"] for r in eu) == ["AMS01", "PAR01"]
    quoted = all_rows(vt, "Warehouses", {"$filter": "Code eq 'NYC''01'"})
    assert [r["Name"] for r in quoted] == ["New York (quote in key)"]
    contains = all_rows(vt, "Warehouses", {"$filter": "contains(Name,'ber') or Capacity gt 15000"})
    assert sorted(r["Code"] for r in contains) == ["BER01", "CHI01"]
    ordered = all_rows(vt, "Warehouses", {"$orderby": "Capacity desc", "$top": "3", "$count": "true"})
    assert [r["Code"] for r in ordered] == ["CHI01", "SEA01", "AMS01"]


def test_what_cannot_be_served_within_the_bound_is_refused(vt: VirtualStack) -> None:
    # StrictWarehouses: the same table, finished-here filters allowed on at most 3 rows.
    with vt.client() as client:
        refused = client.get("StrictWarehouses", params={"$filter": "contains(Name,'a')"})
        assert refused.status_code == 400
        assert refused.json()["invalid_params"][0]["name"] == "$filter"
        assert "at most 3 rows" in refused.json()["detail"] and "8 match" in refused.json()["detail"]
        ordering = client.get("StrictWarehouses", params={"$orderby": "Capacity"})
        assert ordering.status_code == 400 and ordering.json()["invalid_params"][0]["name"] == "$orderby"
        narrowed = client.get("StrictWarehouses", params={"$filter": "Region eq 'EU' and contains(Name,'a')"})
        assert narrowed.status_code == 200
        assert sorted(r["Code"] for r in narrowed.json()["value"]) == ["AMS01", "PAR01"]


# ---- SQL composite key ----------------------------------------------------------------------------------------------


def test_sql_composite_key_guid_round_trip(vt: VirtualStack) -> None:
    rows = all_rows(vt, "OrderLines")
    assert len(rows) == vt.sql("SELECT count(*) AS n FROM order_lines")[0]["n"] == 120
    with vt.client() as client:
        for row in rows[::7]:
            assert row["OrderLineId"] == uuid5(ORDER_LINES_NS, row["OrderNumber"], row["LineNumber"])
            again = client.get(f"OrderLines({row['OrderLineId']})")
            assert {k: v for k, v in again.json().items() if not k.startswith("@")} == row


@pytest.mark.parametrize(
    ("entity_set", "id_name", "other"),
    [
        ("OrderLines", "OrderLineId", "OrderNumber"),
        ("FnoCustomerGroups", "Id", "dataAreaId"),
        ("Warehouses", "WarehouseId", "Region"),
    ],
)
def test_a_filter_on_a_derived_id_finds_its_rows(vt: VirtualStack, entity_set: str, id_name: str, other: str) -> None:
    rows = all_rows(vt, entity_set)
    one, two = rows[1], rows[-1]
    unknown = uuid.uuid4()
    with vt.client() as client:

        def find(expression: str) -> list[str]:
            answer = client.get(entity_set, params={"$filter": expression, "$count": "true", "$top": "500"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["@odata.count"] == len(answer.json()["value"])
            return sorted(r[id_name] for r in answer.json()["value"])

        assert find(f"{id_name} eq {one[id_name]}") == [one[id_name]]
        assert find(f"{id_name} eq {one[id_name]} or {id_name} eq {two[id_name]}") == sorted(
            [one[id_name], two[id_name]]
        )
        assert find(f"{id_name} eq {unknown}") == []
        assert find(f"{id_name} eq {unknown} or {id_name} eq {two[id_name]}") == [two[id_name]]
        same = sorted(r[id_name] for r in rows if r[other] == one[other] and r[id_name] != one[id_name])
        assert find(f"{other} eq '{one[other]}' and {id_name} ne {one[id_name]}") == same
        assert find(f"not ({id_name} ne {unknown})") == []
        assert client.get(f"{entity_set}/$count", params={"$filter": f"{id_name} eq {unknown}"}).text == "0"
        assert client.get(f"{entity_set}/$count", params={"$filter": f"{id_name} eq {one[id_name]}"}).text == "1"
        refused = client.get(entity_set, params={"$filter": f"{id_name} gt {unknown}"})
        assert refused.status_code == 400 and "only eq and ne" in refused.json()["detail"]
