"""Every transform in both directions, its invertibility and its type rules."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from core.maps.transforms import Transform, TransformTypeError
from core.maps.values import MapValueError, coerce

parse = TypeAdapter(Transform).validate_python


def test_value_map_both_directions_and_unknowns():
    pairs = [{"fno": "Organization", "dataverse": 1}, {"fno": "Person", "dataverse": 2}]
    t = parse({"type": "value_map", "pairs": pairs, "unknown": {"fno": "None", "dataverse": None}})
    assert t.to_dataverse("Person") == 2
    assert t.to_fno(1) == "Organization"
    assert t.to_dataverse("Team") is None  # explicit default for unknown F&O values
    assert t.to_fno(99) == "None"
    assert t.to_dataverse(None) is None
    assert t.invertible
    assert t.out_type("enum") == "choice"


def test_value_map_fail_on_unknown():
    t = parse({"type": "value_map", "pairs": [{"fno": "Yes", "dataverse": True}], "unknown": "fail"})
    with pytest.raises(MapValueError, match="no entry for F&O value 'Maybe'"):
        t.to_dataverse("Maybe")
    with pytest.raises(MapValueError, match="not a single value"):
        t.to_dataverse(["Yes"])


def test_value_map_without_default_for_a_used_direction_is_a_problem():
    t = parse({"type": "value_map", "pairs": [{"fno": "A", "dataverse": 1}], "unknown": {"dataverse": 0}})
    assert t.definition_problems("enum", {"to_dataverse"}) == []
    assert any("unknown.fno" in p for p in t.definition_problems("enum", {"both"}))
    with pytest.raises(MapValueError):
        t.to_fno(5)  # no F&O default given: unknown values are refused, never guessed


def test_value_map_with_duplicates_is_not_invertible():
    t = parse({"type": "value_map", "pairs": [{"fno": "A", "dataverse": 1}, {"fno": "B", "dataverse": 1}],
               "unknown": "fail"})
    assert not t.invertible
    assert any("not invertible" in p for p in t.definition_problems("enum", {"both"}))
    assert not any("not invertible" in p for p in t.definition_problems("enum", {"to_dataverse"}))


def test_value_map_literal_of_wrong_type():
    t = parse({"type": "value_map", "pairs": [{"fno": 3, "dataverse": 1}], "unknown": "fail"})
    assert any("F&O value 3 is not an enum" in p for p in t.definition_problems("enum", {"to_dataverse"}))


def test_default_when_null():
    t = parse({"type": "default", "value": "en-us"})
    assert t.to_dataverse(None) == "en-us"
    assert t.to_fno(None) == "en-us"
    assert t.to_dataverse("da") == "da"
    assert not t.invertible
    assert t.definition_problems("integer", set()) == ["default value 'en-us' is not an integer"]


def test_constant():
    t = parse({"type": "constant", "value": 3})
    assert t.to_dataverse("anything") == 3
    assert t.to_fno(None) == 3
    assert not t.invertible


@pytest.mark.parametrize(("kind", "given", "expected"), [("trim", "  a b ", "a b"), ("upper", "usmf", "USMF"),
                                                         ("lower", "USMF", "usmf")])
def test_text_transforms_both_directions(kind, given, expected):
    t = parse({"type": kind})
    assert t.to_dataverse(given) == expected
    assert t.to_fno(given) == expected
    assert t.to_dataverse(None) is None
    assert not t.invertible
    with pytest.raises(TransformTypeError):
        t.out_type("decimal")


def test_fit_length_truncate_or_fail():
    cut = parse({"type": "fit_length", "max_length": 3, "on_overflow": "truncate"})
    assert cut.to_dataverse("abcdef") == "abc"
    assert cut.to_fno("abcdef") == "abc"
    assert not cut.invertible
    strict = parse({"type": "fit_length", "max_length": 3})
    assert strict.to_fno("abc") == "abc"
    with pytest.raises(MapValueError, match="exceeds the maximum length 3"):
        strict.to_dataverse("abcd")
    assert strict.invertible


def test_decimal_scale_keeps_ten_places_and_never_floats():
    t = parse({"type": "decimal_scale", "scale": 10})
    value = Decimal("12345678901234567890.1234567891")  # 30 significant digits, beyond the default context
    assert t.to_dataverse(value) == value
    assert t.to_fno(value) == value
    assert t.to_dataverse(Decimal("25000")) == Decimal("25000.0000000000")
    with pytest.raises(MapValueError, match="more than 10 decimal places"):
        t.to_dataverse(Decimal("0.12345678901"))
    with pytest.raises(MapValueError, match="float"):
        t.to_dataverse(0.1)
    rounding = parse({"type": "decimal_scale", "scale": 2, "on_excess": "round_half_even"})
    assert rounding.to_dataverse(Decimal("2.345")) == Decimal("2.34")
    assert rounding.to_fno(Decimal("2.355")) == Decimal("2.36")
    assert not rounding.invertible and t.invertible


def test_date_datetime_both_sides():
    t = parse({"type": "date_datetime"})
    assert t.to_dataverse(date(2024, 2, 29)) == datetime(2024, 2, 29, tzinfo=UTC)
    assert t.to_fno(datetime(2024, 2, 29, tzinfo=UTC)) == date(2024, 2, 29)
    assert t.to_fno("2024-02-29T00:00:00Z") == date(2024, 2, 29)
    with pytest.raises(MapValueError, match="not midnight UTC"):
        t.to_fno("2024-02-29T10:00:00+00:00")
    assert t.out_type("date") == "datetime"
    reverse = parse({"type": "date_datetime", "date_side": "dataverse"})
    assert reverse.to_dataverse(datetime(2024, 1, 1, tzinfo=UTC)) == date(2024, 1, 1)
    assert reverse.to_fno(date(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=UTC)
    assert reverse.out_type("datetime") == "date"


def test_noyes_bool():
    t = parse({"type": "noyes_bool"})
    assert t.to_dataverse("Yes") is True
    assert t.to_dataverse("No") is False
    assert t.to_fno(True) == "Yes"
    assert t.to_fno(False) == "No"
    with pytest.raises(MapValueError, match="not a NoYes symbol"):
        t.to_dataverse("Maybe")
    with pytest.raises(TransformTypeError, match="needs an enum value"):
        t.out_type("decimal")


def test_unknown_transform_type_is_rejected():
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse({"type": "eval", "code": "1"})


def test_coerce_canonical_forms():
    assert coerce("decimal", "1.50") == Decimal("1.50")
    assert coerce("integer", Decimal("3")) == 3
    assert coerce("guid", "{6D81597F-0F9F-E711-8122-000D3AA2331C}") == "6d81597f-0f9f-e711-8122-000d3aa2331c"
    assert coerce("datetime", "2024-01-01T01:00:00+01:00") == datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(MapValueError, match="timezone-aware"):
        coerce("datetime", datetime(2024, 1, 1))
    with pytest.raises(MapValueError):
        coerce("boolean", "true")


def test_a_date_is_midnight_or_fnos_noon_and_nothing_else():
    # F&O's OData writes a date as Edm.DateTimeOffset at 12:00 UTC; Dataverse date-only columns say midnight.
    assert coerce("date", "2024-01-01T12:00:00Z") == date(2024, 1, 1)
    assert coerce("date", "2024-01-01T00:00:00Z") == date(2024, 1, 1)
    with pytest.raises(MapValueError, match="time of day"):
        coerce("date", "2024-01-01T09:30:00Z")
