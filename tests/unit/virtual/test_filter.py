"""$filter parsing against a definition (typed literals, errors naming $filter) and its evaluation in Python,
which must agree with OData's null semantics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInput
from core.virtual.catalog import load_file
from core.virtual.filter import And, Call, Compare, Const, Not, Or, matches, negated, parse_filter, simplify, walk

TABLE = load_file(Path(__file__).resolve().parents[3] / "virtualtables" / "products.json")


def parse(text: str) -> Any:
    return parse_filter(text, TABLE)


def test_precedence_not_over_and_over_or() -> None:
    assert parse("InStock eq 1 or InStock eq 2 and not Discontinued") == Or(
        Compare("eq", "InStock", 1), And(Compare("eq", "InStock", 2), Not(Compare("eq", "Discontinued", True)))
    )
    assert parse("(InStock eq 1 or InStock eq 2) and Discontinued eq false") == And(
        Or(Compare("eq", "InStock", 1), Compare("eq", "InStock", 2)), Compare("eq", "Discontinued", False)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Price gt 12.3456789012", Compare("gt", "Price", Decimal("12.3456789012"))),
        ("Price gt 12m", Compare("gt", "Price", Decimal(12))),
        ("Weight le 1.5", Compare("le", "Weight", 1.5)),
        ("Barcode eq 9223372036854775807", Compare("eq", "Barcode", 2**63 - 1)),
        ("3 lt InStock", Compare("gt", "InStock", 3)),
        ("Name eq 'O''Neil'", Compare("eq", "Name", "O'Neil")),
        ("Category eq null", Compare("eq", "Category", None)),
        ("ModifiedOn ge 2026-01-01", Compare("ge", "ModifiedOn", datetime(2026, 1, 1, tzinfo=UTC))),
        ("ModifiedOn lt 2026-01-01T02:00:00+02:00", Compare("lt", "ModifiedOn", datetime(2026, 1, 1, tzinfo=UTC))),
        (
            "ModifiedOn lt datetimeoffset'2026-01-01T00:00:00Z'",
            Compare("lt", "ModifiedOn", datetime(2026, 1, 1, tzinfo=UTC)),
        ),
        (
            "ProductId eq 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            Compare("eq", "ProductId", uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")),
        ),
        ("contains(Name,'a''b')", Call("contains", "Name", "a'b")),
        ("startswith( Name , 'x' )", Call("startswith", "Name", "x")),
    ],
)
def test_literals_are_typed_by_the_property(text: str, expected: Any) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Barcode eq 9223372036854775808", "Int64"),
        ("InStock eq 1.5", "Int32"),
        ("Discontinued gt true", "only eq and ne"),
        ("ProductId eq 'not-a-guid'", "Guid"),
        ("ModifiedOn gt 'yesterday'", "DateTimeOffset"),
        ("Name eq 1", "String"),
        ("endswith(Name)", "takes a property and a string"),
        ("Name", "alone is no condition"),
        ("eq 1", "needs something before it"),
        ("Name eq 'x' and", "ends too early"),
        ("Name eq 'x' Or Name eq 'y'", "lower case"),
        ("Name eq 'x';", "cannot be read"),
        ("", "empty"),
    ],
)
def test_errors_name_the_filter_and_say_why(text: str, words: str) -> None:
    with pytest.raises(BadInput) as raised:
        parse(text)
    assert raised.value.field == "$filter"
    assert words in str(raised.value)


ROWS = [
    {"Name": "Alpha", "Category": None, "InStock": 5, "Discontinued": False},
    {"Name": "beta", "Category": "Audio", "InStock": 0, "Discontinued": True},
    {"Name": "Gamma", "Category": "Phones", "InStock": None, "Discontinued": False},
]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Category ne 'Audio'", ["Alpha", "Gamma"]),  # null ne 'Audio' is true in OData
        ("Category eq null", ["Alpha"]),
        ("InStock gt 0", ["Alpha"]),  # null gt 0 is false
        ("not (InStock gt 0)", ["beta", "Gamma"]),
        ("contains(Name,'A')", ["Alpha", "beta", "Gamma"]),  # case-insensitive
        ("startswith(Name,'b') or endswith(Name,'MA')", ["beta", "Gamma"]),
        ("contains(Category,'o')", ["beta", "Gamma"]),  # a null never contains
    ],
)
def test_python_evaluation_follows_odata_semantics(text: str, names: list[str]) -> None:
    node = parse(text)
    assert [r["Name"] for r in ROWS if matches(node, r)] == names


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (And(Const(True), Compare("eq", "A", 1)), Compare("eq", "A", 1)),
        (And(Compare("eq", "A", 1), Const(False)), Const(False)),
        (Or(Const(False), Compare("eq", "A", 1)), Compare("eq", "A", 1)),
        (Or(Compare("eq", "A", 1), Const(True)), Const(True)),
        (Not(Or(Const(False), Const(False))), Const(True)),
        (Not(And(Compare("eq", "A", 1), Not(Const(False)))), Not(Compare("eq", "A", 1))),
    ],
)
def test_simplify_folds_constants_away(node: Any, expected: Any) -> None:
    assert simplify(node) == expected


def test_a_derived_id_parses_as_a_guid_comparison() -> None:
    table = load_file(Path(__file__).resolve().parents[3] / "virtualtables" / "order-lines.json")
    row_id = uuid.uuid4()
    assert parse_filter(f"OrderLineId eq {row_id}", table) == Compare("eq", "OrderLineId", row_id)
    with pytest.raises(BadInput, match="only eq and ne"):
        parse_filter(f"OrderLineId lt {row_id}", table)


def test_a_filter_too_long_or_too_deep_is_a_400_not_a_crash() -> None:
    for text in (
        "(" * 3000 + "InStock eq 1" + ")" * 3000,
        "not " * 1500 + "Discontinued",
        "Name eq 'x' or " * 700 + "Discontinued",
    ):
        with pytest.raises(BadInput) as raised:
            parse(text)
        assert raised.value.field == "$filter"


@pytest.mark.parametrize(
    "text",
    [
        "not (InStock gt 0)",
        "not (Category eq null)",
        "not (Category ne 'Audio')",
        "not (Category eq 'Audio')",
        "not (InStock le 3 or contains(Name,'a'))",
        "not not (InStock lt 5)",
        "not (Category ne null and InStock ge 1)",
    ],
)
def test_negation_pushed_down_means_the_same(text: str) -> None:
    node = parse(text)
    assert isinstance(node, Not)
    pushed = negated(node.operand)
    assert all(not isinstance(n, Not) or isinstance(n.operand, Call) for n in walk(pushed))
    assert [matches(pushed, r) for r in ROWS] == [matches(node, r) for r in ROWS]
