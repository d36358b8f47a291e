"""OData query options over one entity: $filter (the F&O subset), $orderby, $select.

Evaluated in Python over typed rows. String comparisons ignore case, as SQL Server's collation under
F&O does; `Field eq '*text*'` is F&O's wildcard match; enum fields compare only with qualified enum
literals (`Microsoft.Dynamics.DataEntities.NoYes'Yes'`) and only with eq/ne.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from devstack.fno.errors import ODataError
from devstack.fno.schema import Entity, Field, Schema, parse_date, parse_datetime

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<enum>[A-Za-z_][\w.]*\.[A-Za-z_]\w*'[^']*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlL]?)
    | (?P<ident>[A-Za-z_$][\w/]*)
    | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ODataError(400, f"Syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


# A filter as an `or` of conjunctions, each as {field: lowercased string it must equal}; None: too many.
Equalities = list[dict[str, str]] | None
_OPAQUE: Equalities = [{}]  # a condition that pins no field
# Past this many disjuncts (an `and` of `or`s multiplies them) a query is left to the full scan.
MAX_KEY_DISJUNCTS = 1000


class _Parser:
    def __init__(self, text: str, entity: Entity, schema: Schema) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.entity = entity
        self.schema = schema
        # What each predicate built so far pins (key_filter); a predicate missing here pins nothing.
        self.equalities: dict[Predicate, Equalities] = {}

    def _combined(self, op: str, pred: Predicate, left: Predicate, right: Predicate) -> Predicate:
        a, b = self.equalities.get(left, _OPAQUE), self.equalities.get(right, _OPAQUE)
        if a is None or b is None:
            self.equalities[pred] = None
            return pred
        # A field compared with two values in one conjunction matches no row: either value finds a superset.
        out = a + b if op == "or" else [{**y, **x} for x in a for y in b]
        self.equalities[pred] = out if len(out) <= MAX_KEY_DISJUNCTS else None
        return pred

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ODataError(400, f"Syntax error: unexpected end of expression in '{self.text}'.")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok[1] != value:
            raise ODataError(400, f"Syntax error: expected '{value}' but found '{tok[1]}' in '{self.text}'.")

    def parse(self) -> Predicate:
        pred = self.parse_or()
        if self.peek() is not None:
            raise ODataError(400, f"Syntax error at '{self.peek()[1]}' in '{self.text}'.")  # type: ignore[index]
        return pred

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self._word("or"):
            right = self.parse_and()
            left = self._combined("or", (lambda a, b: lambda r: a(r) or b(r))(left, right), left, right)
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_not()
        while self._word("and"):
            right = self.parse_not()
            left = self._combined("and", (lambda a, b: lambda r: a(r) and b(r))(left, right), left, right)
        return left

    def parse_not(self) -> Predicate:
        if self._word("not"):
            inner = self.parse_not()
            return lambda r: not inner(r)
        return self.parse_primary()

    def _word(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1] == word:
            self.i += 1
            return True
        return False

    def parse_primary(self) -> Predicate:
        tok = self.peek()
        if tok and tok[1] == "(":
            self.take()
            inner = self.parse_or()
            self.expect(")")
            return inner
        if tok and tok[0] == "ident" and tok[1] in _FUNCTIONS:
            return self.parse_function()
        left = self.operand()
        op_tok = self.take()
        op = op_tok[1]
        if op in ("has", "in"):
            raise ODataError(400, f"The '{op}' operator is not supported by Finance and Operations OData.")
        if op not in _COMPARISONS:
            raise ODataError(400, f"Syntax error: expected a comparison operator but found '{op}' in '{self.text}'.")
        right = self.operand()
        return self.comparison(op, left, right)

    def parse_function(self) -> Predicate:
        name = self.take()[1]
        self.expect("(")
        fld = self.operand()
        self.expect(",")
        lit = self.operand()
        self.expect(")")
        if not isinstance(fld, Field) or fld.type != "string" or isinstance(lit, Field) or lit[0] != "string":
            raise ODataError(400, f"{name}() takes a string property and a string literal.")
        needle = lit[1].lower()
        get = fld.name
        if name == "contains":
            return lambda r: needle in r[get].lower()
        if name == "startswith":
            return lambda r: r[get].lower().startswith(needle)
        return lambda r: r[get].lower().endswith(needle)

    def operand(self) -> Field | tuple[str, Any]:
        kind, value = self.take()
        if kind == "ident":
            if value in ("true", "false"):
                return ("bool", value == "true")
            if value == "null":
                return ("null", None)
            fld = self.entity.fields.get(value)
            if fld is None:
                raise ODataError(
                    400,
                    f"Could not find a property named '{value}' on type '{self.schema.namespace}.{self.entity.name}'.",
                )
            return fld
        if kind == "string":
            return ("string", value[1:-1].replace("''", "'"))
        if kind == "enum":
            qualified, symbol = value[:-1].split("'", 1)
            return ("enum", (qualified, symbol))
        if kind == "number":
            return ("number", Decimal(value.rstrip("mMdDlL")))
        if kind == "datetime":
            return ("datetime", parse_datetime(value, "$filter"))
        if kind == "date":
            return ("date", parse_date(value, "$filter"))
        raise ODataError(400, f"Syntax error at '{value}' in '{self.text}'.")

    def comparison(self, op: str, left: Field | tuple[str, Any], right: Field | tuple[str, Any]) -> Predicate:
        if not isinstance(left, Field):
            if isinstance(right, Field):  # literal op field: flip
                left, right = right, left
                op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
            else:
                raise ODataError(400, "A comparison needs a property on one side.")
        assert isinstance(left, Field)
        if isinstance(right, Field):
            raise ODataError(400, "Comparing two properties is not supported.")
        kind, lit = right
        name = left.name
        if left.type == "enum":
            return self._enum_comparison(op, left, kind, lit)
        if kind == "null":
            empty = self.schema.empty_value(left)
            return _compare(op, lambda r: r[name], empty)
        if left.type == "string":
            if kind != "string":
                raise self._incompatible(left, kind, op)
            if op in ("eq", "ne") and "*" in lit:
                pattern = re.compile(
                    "^" + ".*".join(re.escape(p) for p in lit.split("*")) + "$", re.IGNORECASE | re.DOTALL
                )
                if op == "eq":
                    return lambda r: pattern.match(r[name]) is not None
                return lambda r: pattern.match(r[name]) is None
            pred = _compare(op, lambda r: r[name].lower(), lit.lower())
            if op == "eq":
                self.equalities[pred] = [{name: lit.lower()}]
            return pred
        if left.type in ("int", "real"):
            if kind != "number":
                raise self._incompatible(left, kind, op)
            return _compare(op, lambda r: r[name], lit)
        if left.type == "date":
            if kind == "datetime":
                lit = lit.date()
            elif kind != "date":
                raise self._incompatible(left, kind, op)
            return _compare(op, lambda r: r[name], lit)
        if left.type == "utcdatetime":
            if kind == "date":
                raise self._incompatible(left, kind, op)
            if kind != "datetime":
                raise self._incompatible(left, kind, op)
            return _compare(op, lambda r: r[name], lit)
        raise self._incompatible(left, kind, op)

    def _enum_comparison(self, op: str, fld: Field, kind: str, lit: Any) -> Predicate:
        if kind != "enum":
            raise self._incompatible(fld, kind, op)
        qualified, symbol = lit
        expected = f"{self.schema.namespace}.{fld.enum}"
        if qualified != expected:
            raise ODataError(
                400,
                f"A binary operator with incompatible types was detected. Found operand types '{expected}' "
                f"and '{qualified}' for operator kind '{_KIND[op]}'.",
            )
        assert fld.enum is not None
        if symbol not in self.schema.enums[fld.enum]:
            raise ODataError(400, f"The string '{symbol}' is not a valid enumerated type constant for '{expected}'.")
        if op not in ("eq", "ne"):
            raise ODataError(400, f"The operator '{op}' is not supported for enum property '{fld.name}'; use eq or ne.")
        name = fld.name
        if op == "eq":
            return lambda r: r[name] == symbol
        return lambda r: r[name] != symbol

    def _incompatible(self, fld: Field, kind: str, op: str) -> ODataError:
        edm = {
            "string": "Edm.String", "int": "Edm.Int32", "real": "Edm.Decimal", "date": "Edm.DateTimeOffset",
            "utcdatetime": "Edm.DateTimeOffset", "enum": f"{self.schema.namespace}.{fld.enum}",
        }[fld.type]
        lit_edm = {
            "string": "Edm.String", "number": "Edm.Decimal", "bool": "Edm.Boolean", "datetime": "Edm.DateTimeOffset",
            "date": "Edm.Date", "enum": "an enum literal", "null": "null",
        }[kind]
        return ODataError(
            400,
            f"A binary operator with incompatible types was detected. Found operand types '{edm}' and "
            f"'{lit_edm}' for operator kind '{_KIND[op]}'.",
        )


_KIND = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan",
         "le": "LessThanOrEqual"}


def _compare(op: str, get: Callable[[Row], Any], lit: Any) -> Predicate:
    if op == "eq":
        return lambda r: get(r) == lit
    if op == "ne":
        return lambda r: get(r) != lit
    if op == "gt":
        return lambda r: get(r) > lit
    if op == "ge":
        return lambda r: get(r) >= lit
    if op == "lt":
        return lambda r: get(r) < lit
    return lambda r: get(r) <= lit


def compile_filter(text: str, entity: Entity, schema: Schema) -> Predicate:
    return _Parser(text, entity, schema).parse()


def key_filter(text: str, entity: Entity, schema: Schema) -> tuple[Predicate, list[dict[str, str]] | None]:
    """The filter's predicate, and the only keys a record it matches can have: one {key field: lowercased
    value} per disjunct when the filter is an `or` of conjunctions each comparing every key field (dataAreaId
    included) `eq` a string literal without a `*` wildcard; else None. Those keys give candidates only: the
    caller still applies the predicate, so other conditions of a conjunction, and casing, work as in a scan.
    How F&O answers such reads: from the key's SQL index, not by reading the table."""
    parser = _Parser(text, entity, schema)
    predicate = parser.parse()
    disjuncts = parser.equalities.get(predicate, _OPAQUE)
    if disjuncts is None or not all(all(k in wanted for k in entity.keys) for wanted in disjuncts):
        return predicate, None
    return predicate, [{k: wanted[k] for k in entity.keys} for wanted in disjuncts]


def parse_select(text: str, entity: Entity, schema: Schema) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n != "*" and n not in entity.fields:
            raise ODataError(
                400, f"Could not find a property named '{n}' on type '{schema.namespace}.{entity.name}'."
            )
    return [] if "*" in names else names


def sort_rows(rows: list[Row], text: str, entity: Entity, schema: Schema) -> list[Row]:
    """Stable multi-key sort: apply the keys from last to first."""
    clauses = []
    for part in text.split(","):
        bits = part.split()
        if not bits:
            continue
        name = bits[0]
        direction = bits[1].lower() if len(bits) > 1 else "asc"
        if name not in entity.fields:
            raise ODataError(
                400, f"Could not find a property named '{name}' on type '{schema.namespace}.{entity.name}'."
            )
        if direction not in ("asc", "desc") or len(bits) > 2:
            raise ODataError(400, f"Syntax error in $orderby at '{part.strip()}'.")
        clauses.append((name, direction == "desc"))
    for name, desc in reversed(clauses):
        fld = entity.fields[name]
        if fld.type == "enum":  # enums sort by their integer value, as in SQL
            assert fld.enum is not None
            values = schema.enums[fld.enum]
            rows.sort(key=lambda r, n=name, v=values: v[r[n]], reverse=desc)
        else:
            rows.sort(key=lambda r, n=name: _sort_key(r[n]), reverse=desc)
    return rows


def _sort_key(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
