"""The closed set of transforms a field mapping may apply.

A transform chain is written in the F&O -> Dataverse direction: `to_dataverse` applies the
transforms in order, `to_fno` applies them in reverse order. Each transform is typed (it
states which value type it accepts and which it produces, see `out_type`) and says whether
it is invertible, i.e. whether `to_fno(to_dataverse(x)) == x` for every valid x; only
invertible transforms may sit on a two-way mapping. There is no way to plug in code.
"""

from __future__ import annotations

import decimal
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from core.maps.values import MapValueError, ValueType, coerce, compatible, type_of_literal

# A literal in a map file. Decimals may be written as JSON numbers (read as Decimal, never
# float) or as strings; the field's declared type decides.
Scalar = str | bool | int | Decimal | None

# Enough digits for F&O's real(32, 10) and Dataverse money with 10 decimal places.
_DECIMAL_CONTEXT = decimal.Context(prec=60)


class TransformTypeError(ValueError):
    """A transform is applied to a value type it does not accept (a map-definition error)."""


class _Transform(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def invertible(self) -> bool:
        return False

    def out_type(self, in_type: ValueType) -> ValueType:
        """The type produced on the Dataverse side from `in_type` on the F&O side."""
        return in_type

    def definition_problems(self, in_type: ValueType, directions: set[str]) -> list[str]:
        """Problems in the transform's own definition for the directions it is used in."""
        return []

    def to_dataverse(self, value: Any) -> Any:
        raise NotImplementedError

    def to_fno(self, value: Any) -> Any:
        raise NotImplementedError

    def _expect(self, in_type: ValueType, *accepted: ValueType) -> None:
        if in_type not in accepted:
            raise TransformTypeError(
                f"transform {self.type!r} needs {_a(' or '.join(accepted))} value, the field is {in_type}"  # type: ignore[attr-defined]
            )


class ValuePair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fno: Scalar = Field(description="Value on the F&O side, e.g. an enum symbol such as 'Organization'")
    dataverse: Scalar = Field(description="Value on the Dataverse side, e.g. a choice value such as 3")


class UnknownValues(BaseModel):
    """What to write for a value that is not in the map; a key must be present (null allowed)
    for every direction the mapping is used in: there is no silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fno: Scalar = Field(None, description="Written to F&O for an unlisted Dataverse value")
    dataverse: Scalar = Field(None, description="Written to Dataverse for an unlisted F&O value")


class ValueMap(_Transform):
    """Explicit value-to-value table (F&O enum symbols <-> Dataverse choice values)."""

    type: Literal["value_map"]
    pairs: list[ValuePair] = Field(min_length=1)
    unknown: Literal["fail"] | UnknownValues = Field(
        description="'fail' to reject unlisted values, or the value to write for them per side")

    @cached_property
    def _forward(self) -> dict[Any, Any]:
        return {pair.fno: pair.dataverse for pair in reversed(self.pairs)}

    @cached_property
    def _backward(self) -> dict[Any, Any]:
        return {pair.dataverse: pair.fno for pair in reversed(self.pairs)}

    @property
    def invertible(self) -> bool:
        return len(self._forward) == len(self.pairs) and len(self._backward) == len(self.pairs)

    def out_type(self, in_type: ValueType) -> ValueType:
        kinds = {type_of_literal(pair.dataverse) for pair in self.pairs} - {None}
        if len(kinds) != 1:
            raise TransformTypeError("value map: the Dataverse values must all be of one type")
        kind = kinds.pop()
        return {"integer": "choice", "string": "string", "boolean": "boolean", "decimal": "decimal"}[kind]  # type: ignore[index,return-value]

    def definition_problems(self, in_type: ValueType, directions: set[str]) -> list[str]:
        problems = [
            f"value map: F&O value {pair.fno!r} is not {_a(in_type)}"
            for pair in self.pairs
            if pair.fno is not None and not compatible(in_type, pair.fno)
        ]
        if "both" in directions and not self.invertible:
            duplicates = _duplicates([p.fno for p in self.pairs]) + _duplicates([p.dataverse for p in self.pairs])
            problems.append(
                "value map is not invertible (values "
                + ", ".join(repr(d) for d in duplicates)
                + " appear more than once) but the mapping is two-way"
            )
        if isinstance(self.unknown, UnknownValues):
            needed = {"to_dataverse": "dataverse", "to_fno": "fno"}
            for direction in sorted(_one_way(directions)):
                side = needed[direction]
                if side not in self.unknown.model_fields_set:
                    problems.append(
                        f"value map needs an explicit 'unknown.{side}' (or unknown: 'fail') for values "
                        f"it does not list"
                    )
        return problems

    def to_dataverse(self, value: Any) -> Any:
        return self._lookup(self._forward, value, "dataverse", "F&O")

    def to_fno(self, value: Any) -> Any:
        return self._lookup(self._backward, value, "fno", "Dataverse")

    def _lookup(self, table: dict[Any, Any], value: Any, side: str, source: str) -> Any:
        try:
            if value in table:
                return table[value]
        except TypeError:  # unhashable: a list or object where a single value belongs
            raise MapValueError(f"{value!r} is not a single value") from None
        if value is None:
            return None
        if self.unknown == "fail" or side not in self.unknown.model_fields_set:
            raise MapValueError(f"value map has no entry for {source} value {value!r}")
        return getattr(self.unknown, side)


class Default(_Transform):
    """Writes `value` when the source value is null (not when it is absent from the change)."""

    type: Literal["default"]
    value: Scalar

    def definition_problems(self, in_type: ValueType, directions: set[str]) -> list[str]:
        return _literal_problems("default", self.value, in_type)

    def to_dataverse(self, value: Any) -> Any:
        return self.value if value is None else value

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class Constant(_Transform):
    """Always writes `value` (dual-write's `none >> column` with a default)."""

    type: Literal["constant"]
    value: Scalar

    def definition_problems(self, in_type: ValueType, directions: set[str]) -> list[str]:
        return _literal_problems("constant", self.value, in_type)

    def to_dataverse(self, value: Any) -> Any:
        return self.value

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class Trim(_Transform):
    type: Literal["trim"]

    def out_type(self, in_type: ValueType) -> ValueType:
        self._expect(in_type, "string")
        return in_type

    def to_dataverse(self, value: Any) -> Any:
        return None if value is None else coerce("string", value).strip()

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class Upper(_Transform):
    type: Literal["upper"]

    def out_type(self, in_type: ValueType) -> ValueType:
        self._expect(in_type, "string")
        return in_type

    def to_dataverse(self, value: Any) -> Any:
        return None if value is None else coerce("string", value).upper()

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class Lower(_Transform):
    type: Literal["lower"]

    def out_type(self, in_type: ValueType) -> ValueType:
        self._expect(in_type, "string")
        return in_type

    def to_dataverse(self, value: Any) -> Any:
        return None if value is None else coerce("string", value).lower()

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class FitLength(_Transform):
    """Keeps text within the target's max length: cut it, or reject the record."""

    type: Literal["fit_length"]
    max_length: PositiveInt
    on_overflow: Literal["fail", "truncate"] = "fail"

    @property
    def invertible(self) -> bool:
        return self.on_overflow == "fail"

    def out_type(self, in_type: ValueType) -> ValueType:
        self._expect(in_type, "string")
        return in_type

    def to_dataverse(self, value: Any) -> Any:
        if value is None:
            return None
        text = coerce("string", value)
        if len(text) <= self.max_length:
            return text
        if self.on_overflow == "truncate":
            return text[: self.max_length]
        raise MapValueError(f"text of {len(text)} characters exceeds the maximum length {self.max_length}")

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class DecimalScale(_Transform):
    """Brings a decimal to `scale` places; by default refuses to lose digits."""

    type: Literal["decimal_scale"]
    scale: int = Field(ge=0, le=20)
    on_excess: Literal["fail", "round_half_even"] = "fail"

    @property
    def invertible(self) -> bool:
        return self.on_excess == "fail"

    def out_type(self, in_type: ValueType) -> ValueType:
        self._expect(in_type, "decimal")
        return in_type

    def to_dataverse(self, value: Any) -> Any:
        if value is None:
            return None
        number = coerce("decimal", value)
        exponent = Decimal(1).scaleb(-self.scale)
        scaled = number.quantize(exponent, rounding=decimal.ROUND_HALF_EVEN, context=_DECIMAL_CONTEXT)
        if self.on_excess == "fail" and scaled != number:
            raise MapValueError(f"{number} has more than {self.scale} decimal places")
        return scaled

    to_fno = to_dataverse  # type: ignore[pydantic-field]  # a method alias, not a field (pydantic skips functions)


class DateDatetime(_Transform):
    """A date on one side, a datetime at 00:00 UTC on the other."""

    type: Literal["date_datetime"]
    date_side: Literal["fno", "dataverse"] = Field("fno", description="Which side holds the date")

    @property
    def invertible(self) -> bool:
        return True

    def out_type(self, in_type: ValueType) -> ValueType:
        if self.date_side == "fno":
            self._expect(in_type, "date")
            return "datetime"
        self._expect(in_type, "datetime")
        return "date"

    def to_dataverse(self, value: Any) -> Any:
        return _to_datetime(value) if self.date_side == "fno" else _to_date(value)

    def to_fno(self, value: Any) -> Any:
        return _to_date(value) if self.date_side == "fno" else _to_datetime(value)


class NoYesBool(_Transform):
    """F&O's NoYes enum ('No'/'Yes') <-> a Dataverse two-option (boolean) column."""

    type: Literal["noyes_bool"]

    @property
    def invertible(self) -> bool:
        return True

    def out_type(self, in_type: ValueType) -> ValueType:
        self._expect(in_type, "enum")
        return "boolean"

    def to_dataverse(self, value: Any) -> Any:
        if value is None:
            return None
        if value in ("Yes", "No"):
            return value == "Yes"
        raise MapValueError(f"{value!r} is not a NoYes symbol ('Yes' or 'No')")

    def to_fno(self, value: Any) -> Any:
        if value is None:
            return None
        return "Yes" if coerce("boolean", value) else "No"


Transform = Annotated[
    ValueMap | Default | Constant | Trim | Upper | Lower | FitLength | DecimalScale | DateDatetime | NoYesBool,
    Field(discriminator="type"),
]


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _one_way(directions: set[str]) -> set[str]:
    expanded = set(directions)
    if "both" in expanded:
        expanded |= {"to_dataverse", "to_fno"}
    return expanded - {"both"}


def _duplicates(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    duplicates: list[Any] = []
    for value in values:
        if value in seen and value not in duplicates:
            duplicates.append(value)
        seen.append(value)
    return duplicates


def _literal_problems(name: str, value: Any, in_type: ValueType) -> list[str]:
    if value is not None and not compatible(in_type, value):
        return [f"{name} value {value!r} is not {_a(in_type)}"]
    return []


def _to_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.combine(coerce("date", value), time.min, tzinfo=UTC)


def _to_date(value: Any) -> date | None:
    if value is None:
        return None
    moment = coerce("datetime", value)
    if moment.time() != time.min:
        raise MapValueError(f"{moment.isoformat()} is not midnight UTC, so it is not a date")
    return moment.date()
