"""The SQL the source builds compiles for the production databases too (PostgreSQL, SQL Server), not only SQLite:
bound parameters, portable negation, LIKE with an escape, key-ordered paging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core.virtual.catalog import load_file
from core.virtual.filter import Const, Or, parse_filter
from core.virtual.sql import SqlSource

TABLE = load_file(Path(__file__).resolve().parents[3] / "virtualtables" / "order-lines.json")
FILTER = (
    "not (Amount gt 10.5 or contains(ItemNumber,'50%')) and (OrderNumber eq 'SO''1' or ShippedOn eq null) "
    "and not startswith(ItemNumber,'P')"
)


@pytest.mark.parametrize("url", ["postgresql://", "mssql+pyodbc://", "sqlite://"])
def test_the_statement_compiles_for(url: str) -> None:
    engine = sa.create_mock_engine(url, lambda *a, **k: None)
    source = SqlSource(TABLE, engine, "order_lines")  # type: ignore[arg-type]
    node = parse_filter(FILTER, TABLE)
    after = Or(
        parse_filter("OrderNumber gt 'SO-1'", TABLE), parse_filter("OrderNumber eq 'SO-1' and LineNumber gt 2", TABLE)
    )
    statement = (
        sa.select(source.sql)
        .where(source.clause(node), source.clause(after), source.clause(Const(True)))
        .order_by(source.sql.c.OrderNumber, source.sql.c.LineNumber)
        .limit(50)
    )
    compiled = statement.compile(dialect=engine.dialect)
    text: str = str(compiled)
    params: dict[str, Any] = compiled.params
    assert "SO'1" in params.values() and "50\\%" in "".join(str(v) for v in params.values())
    assert "SO''1" not in text and "50" not in text  # values bound, never in the text
    # not is pushed down: NOT LIKE on a column and IS NULL on columns only, never NOT (...) or (...) IS NULL
    assert ("NOT LIKE lower(" in text or "NOT ILIKE" in text) and "ESCAPE" in text
    assert "order_lines.amount IS NULL" in text
    assert "NOT (" not in text and ") IS NULL" not in text
