"""What the F&O source sends as the entity's $filter: literals quoted so a value stays one literal, text functions as
F&O's wildcard, and what it keeps for the service to finish."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

from core.virtual.catalog import load_file
from core.virtual.filter import Compare, Const, parse_filter
from core.virtual.fno import FnoEntitySource, odata_literal
from core.virtual.model import FnoSource

TABLE = load_file(Path(__file__).resolve().parents[3] / "virtualtables" / "fno-customer-groups.json")
SOURCE = FnoEntitySource(TABLE, cast(FnoSource, TABLE.source), cast(Any, None))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dataAreaId eq 'usmf'", "dataAreaId eq 'usmf'"),
        ("Description eq 'O''Neil'' OR 1 eq 1'", "Description eq 'O''Neil'' OR 1 eq 1'"),
        ("contains(Description,'whole')", "Description eq '*whole*'"),
        ("startswith(Description,'it''s')", "Description eq 'it''s*'"),
        ("not endswith(Description,'x') or Description eq null", "(not (Description eq '*x') or Description eq null)"),
    ],
)
def test_the_filter_f_and_o_gets(text: str, expected: str) -> None:
    node = parse_filter(text, TABLE)
    assert SOURCE.pushable(node)
    assert SOURCE.expression(node) == expected


def test_a_needle_holding_the_wildcard_and_constants_stay_here() -> None:
    assert not SOURCE.pushable(parse_filter("contains(Description,'50*')", TABLE))
    assert not SOURCE.pushable(Const(False))


def test_literals() -> None:
    assert odata_literal(Decimal("1.5000000001")) == "1.5000000001"
    assert odata_literal(datetime(2026, 1, 1, 1, tzinfo=UTC)) == "2026-01-01T01:00:00Z"
    assert odata_literal(True) == "true" and odata_literal(None) == "null"
    row_id = uuid.uuid4()
    assert odata_literal(row_id) == str(row_id)
    assert SOURCE.expression(Compare("gt", "dataAreaId", "us'")) == "dataAreaId gt 'us'''"
