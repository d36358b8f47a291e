"""The SQL source in-process against a real SQLite file: the statements it issues (SQLAlchemy's
before_cursor_execute event), and that SQL and the Python evaluator agree on every filter (so what is pushed down and
what is finished here answer alike), generated with hypothesis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.virtual.catalog import load_file
from core.virtual.filter import matches, parse_filter
from core.virtual.sql import SqlSource
from devstack.virtualdata import DEFINITIONS, create_sql

pytestmark = pytest.mark.integration
TABLE = load_file(DEFINITIONS / "products.json")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqlSource, list[tuple[str, Any]]]]:
    path: Path = tmp_path_factory.mktemp("sql") / "p.db"
    engine = create_sql(f"sqlite:///{path}", products=300, order_lines=0)
    issued: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        issued.append((statement, parameters))

    yield SqlSource(TABLE, engine, "products"), issued
    engine.dispose()


def test_one_statement_with_bound_parameters(source: tuple[SqlSource, list[tuple[str, Any]]]) -> None:
    sql, issued = source
    issued.clear()
    node = parse_filter("Name eq 'x'' OR ''1''=''1' or startswith(ItemNumber,'P0001%')", TABLE)
    rows = asyncio.run(sql.rows(node, [("Price", True), ("ProductId", False)], 20, 10))
    assert rows == []
    [(statement, parameters)] = issued
    statement = " ".join(statement.split())
    assert "products.name = ?" in statement and "LIKE lower(?) ESCAPE" in statement
    assert "ORDER BY CAST(products.price AS FLOAT) DESC, products.product_id ASC LIMIT ? OFFSET ?" in statement
    assert "x' OR '1'='1" in parameters and "P0001\\%%" in parameters and 10 in parameters and 20 in parameters
    assert "OR '1'" not in statement


PROPERTIES = {
    "Name": st.sampled_from(["'Pro Audio 1'", "'x'", "'O''Neil'", "'Mini Phone 7'"]),
    "Category": st.sampled_from(["'Audio'", "'Phones'", "null", "'Nope'"]),
    "InStock": st.integers(-1, 501).map(str),
    "Price": st.sampled_from(["0", "100.5", "5000", "9999.99", "2500.0000000001"]),
    "Weight": st.sampled_from(["0.5", "10", "24.999"]),
    "Discontinued": st.sampled_from(["true", "false"]),
    "ModifiedOn": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-03T12:00:00Z", "2026-02-01"]),
    "Barcode": st.sampled_from(["4000000000000", "4000000000150"]),
}


@st.composite
def comparison(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(PROPERTIES)))
    literal = draw(PROPERTIES[name])
    if name == "Name" and draw(st.booleans()):
        function = draw(st.sampled_from(["contains", "startswith", "endswith"]))
        needle = draw(st.sampled_from(["'pro'", "'7'", "'%'", "'_'", "'a'"]))
        return f"{function}(Name,{needle})"
    ops = ["eq", "ne"] if literal == "null" or name == "Discontinued" else ["eq", "ne", "gt", "ge", "lt", "le"]
    return f"{name} {draw(st.sampled_from(ops))} {literal}"


filters = st.recursive(
    comparison(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda f: f"not ({f})"),
    ),
    max_leaves=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=filters)
def test_sql_and_python_agree(source: tuple[SqlSource, list[tuple[str, Any]]], text: str) -> None:
    sql, _ = source
    everything = asyncio.run(sql.rows(None, [("ProductId", False)], 0, None))
    node = parse_filter(text, TABLE)
    in_sql = [r["ProductId"] for r in asyncio.run(sql.rows(node, [("ProductId", False)], 0, None))]
    in_python = [r["ProductId"] for r in everything if matches(node, r)]
    assert in_sql == in_python, text
    assert asyncio.run(sql.count(node)) == len(in_python)
