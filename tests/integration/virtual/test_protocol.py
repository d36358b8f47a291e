"""The OData v4 protocol of the virtual table service over HTTP, against the SQLite demo table: the service
document, $metadata, every query option, paging to the end, $count, and the 401/404/400 answers."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.virtual.conftest import KEY, VirtualStack

pytestmark = pytest.mark.integration
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def products(vt: VirtualStack) -> list[dict[str, Any]]:
    """Every product as the database holds it, typed the way the service should answer."""
    rows = vt.sql("SELECT * FROM products")
    out = []
    for r in rows:
        out.append(
            {
                "ProductId": str(uuid.UUID(hex=r["product_id"])),
                "ItemNumber": r["item_number"],
                "Name": r["name"],
                "Category": r["category"],
                "Price": Decimal(r["price"]),
                "Weight": r["weight"],
                "InStock": r["in_stock"],
                "Barcode": r["barcode"],
                "Discontinued": bool(r["discontinued"]),
                "ModifiedOn": datetime.fromisoformat(r["modified_on"]).replace(tzinfo=UTC),
            }
        )
    return out


def ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [row["ProductId"] for row in answer.json()["value"]]


def test_service_document_lists_every_entity_set(vt: VirtualStack) -> None:
    with vt.client() as client:
        answer = client.get("")
    assert answer.status_code == 200
    assert answer.headers["OData-Version"] == "4.0"
    names = {s["name"] for s in answer.json()["value"]}
    assert {
        "Products",
        "OrderLines",
        "FnoCustomerGroups",
        "Warehouses",
        "StrictWarehouses",
        "ReadOnlyProducts",
    } == names


def test_metadata_describes_guid_keys_types_and_required_columns(vt: VirtualStack) -> None:
    with vt.client() as client:
        answer = client.get("$metadata")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
    schema = ET.fromstring(answer.text).find(f".//{EDM}Schema")
    assert schema is not None
    types = {t.get("Name"): t for t in schema.findall(f"{EDM}EntityType")}
    product = types["Product"]
    assert [k.get("Name") for k in product.findall(f"{EDM}Key/{EDM}PropertyRef")] == ["ProductId"]
    props = {p.get("Name"): p.attrib for p in product.findall(f"{EDM}Property")}
    assert props["ProductId"]["Type"] == "Edm.Guid"
    assert props["ItemNumber"]["Nullable"] == "false" and props["ItemNumber"]["MaxLength"] == "20"
    assert "Nullable" not in props["Category"]
    assert props["Price"]["Type"] == "Edm.Decimal" and props["Price"]["Scale"] == "10"
    assert props["Barcode"]["Type"] == "Edm.Int64"
    order_line = types["OrderLine"]
    key = order_line.find(f"{EDM}Key/{EDM}PropertyRef")
    assert key is not None and key.get("Name") == "OrderLineId"
    allowed = {
        "Edm.Boolean",
        "Edm.DateTimeOffset",
        "Edm.Decimal",
        "Edm.Double",
        "Edm.Guid",
        "Edm.Int32",
        "Edm.Int64",
        "Edm.String",
    }
    assert {p.get("Type") for p in schema.iter(f"{EDM}Property")} <= allowed
    sets = {s.get("Name"): s.get("EntityType") for s in schema.iter(f"{EDM}EntitySet")}
    assert sets["Products"] == "DualWrite.Virtual.Product"


@pytest.mark.parametrize("how", ["none", "wrong header", "wrong param", "empty"])
def test_no_key_or_a_wrong_one_is_401(vt: VirtualStack, how: str) -> None:
    headers = {"x-vt-key": "nope"} if how == "wrong header" else {"x-vt-key": ""} if how == "empty" else {}
    params = {"vtkey": KEY[:-1]} if how == "wrong param" else {}
    for path in ("", "$metadata", "Products", f"Products({uuid.uuid4()})"):
        answer = httpx.get(vt.root + path, headers=headers, params=params)
        assert answer.status_code == 401, (how, path)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "x-vt-key" in answer.json()["detail"] and "vtkey" in answer.json()["detail"]


def test_the_key_as_header_or_as_query_parameter(vt: VirtualStack) -> None:
    assert httpx.get(vt.root + "Products", headers={"x-vt-key": KEY}, params={"$top": "1"}).status_code == 200
    assert httpx.get(vt.root + "Products", params={"$top": "1", "vtkey": KEY}).status_code == 200


def test_select_returns_those_properties_and_the_id(vt: VirtualStack) -> None:
    with vt.client() as client:
        rows = client.get("Products", params={"$select": "Name,Price", "$top": "5"}).json()["value"]
    assert len(rows) == 5
    assert all(set(r) == {"ProductId", "Name", "Price"} for r in rows)


def test_values_keep_their_types_decimals_every_digit(vt: VirtualStack) -> None:
    expected = {p["ProductId"]: p for p in products(vt)}
    with vt.client() as client:
        answer = client.get("Products", params={"$top": "200"})
    rows = httpx.Response(200, content=answer.content).json(parse_float=Decimal)["value"]
    assert len(rows) == 200
    for row in rows:
        want = expected[row["ProductId"]]
        assert row["Price"] == want["Price"]  # 10 decimals, no float on the way
        assert datetime.fromisoformat(row["ModifiedOn"]) == want["ModifiedOn"]
        assert row["ModifiedOn"].endswith("Z")
        assert row["Barcode"] == want["Barcode"] and row["Discontinued"] is want["Discontinued"]


GUID_OF_ROW_7: list[str] = []

FILTERS: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("Price gt 5000", lambda p: p["Price"] > 5000),
    ("5000 lt Price", lambda p: p["Price"] > 5000),
    ("Price le 100.5", lambda p: p["Price"] <= Decimal("100.5")),
    ("Category eq null", lambda p: p["Category"] is None),
    ("Category ne null", lambda p: p["Category"] is not None),
    ("Category ne 'Audio'", lambda p: p["Category"] != "Audio"),
    ("Category eq 'Audio' or Category eq 'Phones'", lambda p: p["Category"] in ("Audio", "Phones")),
    ("contains(Name,'pro') and not Discontinued", lambda p: "pro" in p["Name"].lower() and not p["Discontinued"]),
    (
        "(InStock lt 10 or InStock ge 490) and Weight gt 1.5",
        lambda p: (p["InStock"] < 10 or p["InStock"] >= 490) and p["Weight"] > 1.5,
    ),
    ("not (InStock ge 100)", lambda p: not p["InStock"] >= 100),
    ("ModifiedOn ge 2026-01-02T00:00:00Z", lambda p: p["ModifiedOn"] >= datetime(2026, 1, 2, tzinfo=UTC)),
    ("ModifiedOn lt 2026-01-01T12:00:00+02:00", lambda p: p["ModifiedOn"] < datetime(2026, 1, 1, 10, tzinfo=UTC)),
    ("Barcode eq 4000000000005", lambda p: p["Barcode"] == 4000000000005),
    ("startswith(ItemNumber,'P00001')", lambda p: p["ItemNumber"].startswith("P00001")),
    ("endswith(Name,'7')", lambda p: p["Name"].endswith("7")),
    ("Discontinued eq true", lambda p: p["Discontinued"]),
    ("Discontinued", lambda p: p["Discontinued"]),
    ("Name eq 'Nothing by this name'", lambda p: False),
]


@pytest.mark.parametrize(("expression", "expected"), FILTERS, ids=[f for f, _ in FILTERS])
def test_filter(vt: VirtualStack, expression: str, expected: Callable[[dict[str, Any]], bool]) -> None:
    want = sorted(p["ProductId"] for p in products(vt) if expected(p))
    with vt.client() as client:
        answer = client.get("Products", params={"$filter": expression, "$top": "500", "$count": "true"})
    assert sorted(ids(answer)) == want
    assert answer.json()["@odata.count"] == len(want)


def test_filter_by_guid_bare_and_typed(vt: VirtualStack) -> None:
    one = products(vt)[7]["ProductId"]
    with vt.client() as client:
        for literal in (one, f"guid'{one}'", one.upper()):
            assert ids(client.get("Products", params={"$filter": f"ProductId eq {literal}"})) == [one]


@pytest.mark.parametrize(
    ("orderby", "key"),
    [
        ("Price desc", lambda p: (-p["Price"], p["ProductId"])),
        ("Price", lambda p: (p["Price"], p["ProductId"])),
        ("InStock asc,Name desc", None),
    ],
)
def test_orderby(vt: VirtualStack, orderby: str, key: Callable[[dict[str, Any]], Any] | None) -> None:
    rows = products(vt)
    if key is None:
        rows.sort(key=lambda p: p["ProductId"])
        rows.sort(key=lambda p: p["Name"], reverse=True)
        rows.sort(key=lambda p: p["InStock"])
    else:
        rows.sort(key=key)
    with vt.client() as client:
        assert ids(client.get("Products", params={"$orderby": orderby, "$top": "500"})) == [
            p["ProductId"] for p in rows
        ]


def test_top_and_skip_slice_the_ordered_rows(vt: VirtualStack) -> None:
    ordered = sorted(p["ProductId"] for p in products(vt))
    with vt.client() as client:
        assert ids(client.get("Products", params={"$top": "7", "$skip": "3"})) == ordered[3:10]
        answer = client.get("Products", params={"$top": "7", "$skip": "3"})
        assert "@odata.nextLink" not in answer.json()  # the caller's $top is served: client-side paging
        assert ids(client.get("Products", params={"$skip": "195"})) == ordered[195:]
        assert ids(client.get("Products", params={"$top": "0"})) == []


@pytest.mark.parametrize("count", [{"$count": "true"}, {"$inlinecount": "allpages"}])
def test_server_paging_to_the_end_with_count(vt: VirtualStack, count: dict[str, str]) -> None:
    expected = sorted(p["ProductId"] for p in products(vt) if p["Price"] > 1000)
    seen: list[str] = []
    pages = 0
    with vt.client() as client:
        url: str | None = vt.root + "Products"
        params: dict[str, str] | None = {"$filter": "Price gt 1000", "$select": "Name", **count}
        while url:
            answer = client.get(url, params=params)
            body = answer.json()
            assert body["@odata.count"] == len(expected)
            assert len(body["value"]) <= 50
            seen += ids(answer)
            url, params = body.get("@odata.nextLink"), None
            pages += 1
    assert pages == -(-len(expected) // 50) and pages > 1
    assert seen == expected  # every row once, in key order


def test_top_larger_than_a_page_goes_on_behind_next_links(vt: VirtualStack) -> None:
    ordered = sorted(p["ProductId"] for p in products(vt))
    seen: list[str] = []
    sizes = []
    with vt.client() as client:
        client.headers["Prefer"] = "odata.maxpagesize=40"
        url: str | None = vt.root + "Products?$top=110"
        while url:
            answer = client.get(url)
            sizes.append(len(answer.json()["value"]))
            seen += ids(answer)
            url = answer.json().get("@odata.nextLink")
    assert sizes == [40, 40, 30]
    assert seen == ordered[:110]


def test_count_alone(vt: VirtualStack) -> None:
    expected = sum(1 for p in products(vt) if p["Category"] == "Audio")
    with vt.client() as client:
        answer = client.get("Products/$count", params={"$filter": "Category eq 'Audio'"})
    assert answer.status_code == 200 and answer.text == str(expected)


BAD: list[tuple[dict[str, str], str, str]] = [
    ({"$top": "-1"}, "$top", "whole number"),
    ({"$top": "ten"}, "$top", "whole number"),
    ({"$skip": "1.5"}, "$skip", "whole number"),
    ({"$filter": "Price gt 'cheap'"}, "$filter", "Decimal"),
    ({"$filter": "Nope eq 1"}, "$filter", "no property 'Nope'"),
    ({"$filter": "(Price gt 1"}, "$filter", "')'"),
    ({"$filter": "Price gt"}, "$filter", "ends too early"),
    ({"$filter": "Price GT 1"}, "$filter", "lower case"),
    ({"$filter": "Name eq 'unterminated"}, "$filter", "single quotes"),
    ({"$filter": "InStock eq 99999999999"}, "$filter", "Int32"),
    ({"$filter": "Price gt null"}, "$filter", "null"),
    ({"$filter": "contains(Price,'1')"}, "$filter", "text"),
    ({"$filter": "Name eq Category"}, "$filter", "two properties"),
    ({"$orderby": "Nope"}, "$orderby", "Nope"),
    ({"$orderby": "Price sideways"}, "$orderby", "asc or desc"),
    ({"$select": "Name,Nope"}, "$select", "'Nope'"),
    ({"$count": "maybe"}, "$count", "true or false"),
    ({"$inlinecount": "some"}, "$inlinecount", "allpages"),
    ({"$skiptoken": "not-ours"}, "$skiptoken", "nextLink"),
    ({"$levitate": "1"}, "$levitate", "not a query option"),
]


@pytest.mark.parametrize(("params", "option", "words"), BAD, ids=[f"{o}={next(iter(p.values()))}" for p, o, _ in BAD])
def test_a_bad_query_option_is_a_400_naming_it(
    vt: VirtualStack, params: dict[str, str], option: str, words: str
) -> None:
    with vt.client() as client:
        answer = client.get("Products", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["invalid_params"][0]["name"] == option
    assert words in body["detail"]
    assert body["error"]["message"] == body["detail"]  # what Dataverse writes to the plug-in trace log


def test_unknown_ids_and_sets_are_404(vt: VirtualStack) -> None:
    with vt.client() as client:
        for path in (
            f"Products({uuid.uuid4()})",
            f"OrderLines({uuid.uuid4()})",
            f"FnoCustomerGroups({uuid.uuid4()})",
            f"Warehouses({uuid.uuid4()})",
            "Nothing",
            "products",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"] == "application/problem+json"
        bad = client.get("Products(42)")
        assert bad.status_code == 400 and bad.json()["invalid_params"][0]["name"] == "key"


def test_a_row_by_its_id_with_select(vt: VirtualStack) -> None:
    one = products(vt)[3]
    with vt.client() as client:
        answer = client.get(f"Products({one['ProductId']})", params={"$select": "Name"})
    assert answer.status_code == 200
    assert answer.json()["@odata.context"].endswith("$metadata#Products/$entity")
    assert {k: v for k, v in answer.json().items() if not k.startswith("@")} == {
        "ProductId": one["ProductId"],
        "Name": one["Name"],
    }


def test_prefer_maxpagesize_sets_the_server_page_up_to_the_cap(vt: VirtualStack) -> None:
    with vt.client() as client:
        big = client.get("Products", headers={"Prefer": "odata.maxpagesize=120"})
        assert len(big.json()["value"]) == 120 and "@odata.nextLink" in big.json()
        capped = client.get("Products", headers={"Prefer": "odata.maxpagesize=5000"})
        assert len(capped.json()["value"]) == 200  # max_page_size is 500; the table has 200 rows
        assert "@odata.nextLink" not in capped.json()
        default = client.get("Products")
        assert len(default.json()["value"]) == 50 and "@odata.nextLink" in default.json()


def test_ieee754_compatible_clients_get_int64_and_decimal_as_strings(vt: VirtualStack) -> None:
    one = products(vt)[5]
    with vt.client() as client:
        plain = client.get(f"Products({one['ProductId']})").json()
        text = client.get(
            f"Products({one['ProductId']})",
            headers={"Accept": "application/json;odata.metadata=minimal;IEEE754Compatible=true"},
        )
    assert isinstance(plain["Barcode"], int) and not isinstance(plain["Price"], str)
    assert "IEEE754Compatible=true" in text.headers["content-type"]
    body = text.json()
    assert body["Barcode"] == str(one["Barcode"]) and Decimal(body["Price"]) == one["Price"]
    assert isinstance(body["InStock"], int)  # Int32 stays a number
