"""What a query becomes in SQL (the host logs each statement's text with VIRTUAL_TABLES_SQL_ECHO=true): filters,
order and paging run in the database as one parameterised statement, and injection attempts in `$filter` values
stay values."""

from __future__ import annotations

import time

import pytest

from tests.integration.virtual.conftest import VirtualStack

pytestmark = pytest.mark.integration
MARK = "virtual table SQL: "


def statements(vt: VirtualStack, params: dict[str, str], path: str = "Products") -> tuple[int, list[str]]:
    """The answer's status and the SQL statements the request issued, from the host's log."""
    before = len(vt.host.log())
    with vt.client() as client:
        answer = client.get(path, params=params or None)
    deadline = time.monotonic() + 5
    while True:
        new = vt.host.log()[before:]
        found = [line.split(MARK, 1)[1] for line in new.splitlines() if MARK in line]
        if found or time.monotonic() > deadline:
            return answer.status_code, found
        time.sleep(0.05)


def test_filter_order_and_page_are_one_parameterised_statement(vt: VirtualStack) -> None:
    status, issued = statements(
        vt,
        {
            "$filter": "contains(Name,'pro') and Price gt 100 and Category ne null",
            "$orderby": "Price desc",
            "$top": "5",
            "$skip": "10",
        },
    )
    assert status == 200
    assert len(issued) == 1
    sql = issued[0]
    assert sql.startswith("SELECT products.product_id")
    assert "FROM products WHERE" in sql
    assert "lower(products.name) LIKE lower(?) ESCAPE" in sql
    assert "CAST(products.price AS FLOAT) > ?" in sql
    assert "products.category IS NOT NULL" in sql
    assert "ORDER BY CAST(products.price AS FLOAT) DESC, products.product_id ASC" in sql
    assert sql.endswith("LIMIT ? OFFSET ?")
    assert "pro" not in sql.replace("product", "") and "100" not in sql  # values are parameters


def test_count_is_a_count_query_with_the_same_where(vt: VirtualStack) -> None:
    status, issued = statements(vt, {"$filter": "InStock lt 10", "$count": "true", "$top": "3"})
    assert status == 200
    assert len(issued) == 2
    assert "LIMIT ?" in issued[0] and "WHERE products.in_stock < ?" in issued[0]
    assert issued[1].startswith("SELECT count(*) AS count_1 FROM products WHERE products.in_stock < ?")


def test_or_not_and_null_semantics_are_sql(vt: VirtualStack) -> None:
    status, issued = statements(vt, {"$filter": "not (Category eq 'Audio' or InStock le 3)", "$top": "1"})
    assert status == 200
    # not pushed down to the comparisons, each true for a null as OData means it: portable SQL, no NOT over unknown
    assert (
        "WHERE (products.category != ? OR products.category IS NULL) AND "
        "(products.in_stock > ? OR products.in_stock IS NULL)"
    ) in issued[0]
    assert "NOT" not in issued[0]


INJECTIONS = [
    "Name eq 'x'' OR 1=1 --'",
    "Name eq 'Robert''); DROP TABLE products;--'",
    "contains(Name,'%')",
    "contains(Name,'_')",
    "startswith(Name,'\\')",
    "Name eq '1'' UNION SELECT sqlite_version(), 1, 1, 1, 1, 1, 1, 1, 1, 1 --'",
]


@pytest.mark.parametrize("expression", INJECTIONS)
def test_injection_attempts_in_filter_values_are_inert(vt: VirtualStack, expression: str) -> None:
    before = vt.sql("SELECT count(*) AS n FROM products")[0]["n"]
    with vt.client() as client:
        answer = client.get("Products", params={"$filter": expression, "$count": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["value"] == [] and answer.json()["@odata.count"] == 0
    assert vt.sql("SELECT count(*) AS n FROM products")[0]["n"] == before
    status, issued = statements(vt, {"$filter": expression})
    assert status == 200
    assert all("DROP" not in s and "UNION" not in s and "1=1" not in s for s in issued)


def test_a_name_with_a_quote_is_found_by_its_quoted_literal(vt: VirtualStack) -> None:
    with vt.client() as client:
        created = client.post("Products", json={"ItemNumber": "Q-1", "Name": "O'Neil's 100% _cable_"})
        assert created.status_code == 201, created.text
        try:
            for expression in (
                "Name eq 'O''Neil''s 100% _cable_'",
                "contains(Name,'100%')",
                "contains(Name,'_cable_')",
                "startswith(Name,'o''neil')",
            ):
                rows = client.get("Products", params={"$filter": expression}).json()["value"]
                assert [r["ItemNumber"] for r in rows] == ["Q-1"], expression
        finally:
            client.delete(f"Products({created.json()['ProductId']})")


def test_server_pages_after_the_first_continue_from_the_last_key_not_an_offset(vt: VirtualStack) -> None:
    with vt.client() as client:
        first = client.get("Products", params={"$select": "Name"}).json()
    link = first["@odata.nextLink"]
    status, issued = statements(vt, {}, path=link)
    assert status == 200
    [sql] = issued
    # (SQLAlchemy writes OFFSET ? on SQLite whenever there is a LIMIT; the offset bound here is 0)
    assert "WHERE products.product_id > ? ORDER BY products.product_id ASC LIMIT ?" in sql
    # with the caller's own order the next page is an offset (rows with equal values have no key order to resume)
    ordered = vt.client().get("Products", params={"$orderby": "Category", "$select": "Name"}).json()
    status, issued = statements(vt, {}, path=ordered["@odata.nextLink"])
    assert status == 200 and "product_id >" not in issued[0]
    assert "ORDER BY products.category ASC, products.product_id ASC LIMIT ? OFFSET ?" in issued[0]


def test_a_composite_key_pages_by_key_to_the_end(vt: VirtualStack) -> None:
    expected = [
        (r["order_number"], r["line_number"])
        for r in vt.sql("SELECT order_number, line_number FROM order_lines ORDER BY order_number, line_number")
    ]
    seen: list[tuple[str, int]] = []
    pages = 0
    with vt.client() as client:
        client.headers["Prefer"] = "odata.maxpagesize=7"
        url: str | None = vt.root + "OrderLines?$count=true"
        while url:
            body = client.get(url).json()
            assert body["@odata.count"] == len(expected)
            seen += [(r["OrderNumber"], r["LineNumber"]) for r in body["value"]]
            url = body.get("@odata.nextLink")
            pages += 1
    assert seen == expected and pages == -(-len(expected) // 7)
    status, issued = statements(vt, {"$skiptoken": "eyJvIjowLCJrIjpbIlNPLTEwMDAiLCI0Il19"}, path="OrderLines")
    assert status == 200  # {"o":0,"k":["SO-1000","4"]}: after SO-1000 line 4
    assert "order_lines.order_number > ? OR order_lines.order_number = ? AND order_lines.line_number > ?" in issued[0]


def test_a_key_token_with_an_order_of_its_own_is_refused(vt: VirtualStack) -> None:
    with vt.client() as client:
        answer = client.get(
            "OrderLines", params={"$skiptoken": "eyJvIjowLCJrIjpbIlNPLTEwMDAiLCI0Il19", "$orderby": "Amount"}
        )
    assert answer.status_code == 400 and answer.json()["invalid_params"][0]["name"] == "$skiptoken"
