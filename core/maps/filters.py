"""Source filters: one AST from two syntaxes, evaluated in Python, rendered back to `$filter`.

Accepted syntaxes (they may even be mixed, since both parse to the same tree):
- the OData `$filter` subset: `eq ne gt ge lt le`, `and or not`, parentheses, `null`,
  `true/false`, numbers, 'strings' ('' escapes a quote), `contains/startswith/endswith(field,'x')`
  and enum literals such as `Microsoft.Dynamics.DataEntities.NoYes'Yes'`;
- dual-write's F&O query-range expressions: `((PartyType == "Organization"))`, `=`/`==`, `!=`,
  `&&`, `||`, `!`, "double quoted" strings, qualified names `CustTable.Blocked`, enum symbols
  `CustVendorBlocked::No` or bare `Organization`, value lists `(Blocked == No, Invoice)` and
  ranges `(Blocked == No..Invoice)` (enum ranges need the enum's member order to evaluate).

String comparisons are case-insensitive, as they are in both servers (SQL collations).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, Union

from core.maps.values import MapValueError, coerce

Op = Literal["eq", "ne", "gt", "ge", "lt", "le"]
DEFAULT_ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"


class FilterError(ValueError):
    """A filter that cannot be parsed, evaluated or rendered."""


class FilterSyntaxError(FilterError):
    def __init__(self, message: str, text: str, position: int) -> None:
        super().__init__(f"{message} at column {position + 1} of {text!r}")
        self.position = position


@dataclass(frozen=True)
class EnumSymbol:
    symbol: str
    enum_type: str | None = None  # short name, e.g. NoYes; None when written bare


Value = Union[str, int, Decimal, bool, None, date, datetime, EnumSymbol]  # noqa: UP007 (runtime alias)


@dataclass(frozen=True)
class Comparison:
    field: str
    op: Op
    value: Value


@dataclass(frozen=True)
class Between:
    field: str
    low: Value
    high: Value


@dataclass(frozen=True)
class AnyOf:
    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class StringCall:
    function: Literal["contains", "startswith", "endswith"]
    field: str
    value: str


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Union[Comparison, Between, AnyOf, StringCall, And, Or, Not]  # noqa: UP007

# ----------------------------------------------------------------------------------------- lexing

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]\w))
  | (?P<sstring>'(?:[^']|'')*')
  | (?P<dstring>"(?:[^"\\]|\\.)*")
  | (?P<range>\.\.)
  | (?P<op>==|!=|<=|>=|&&|\|\||::|[=<>!(),])
  | (?P<name>[A-Za-z_][\w]*(?:[./][A-Za-z_][\w]*)*)
    """,
    re.VERBOSE,
)

_WORD_OPS = {"eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not"}
_SYMBOL_OPS: dict[str, str] = {
    "==": "eq", "=": "eq", "!=": "ne", ">": "gt", ">=": "ge", "<": "lt", "<=": "le",
    "&&": "and", "||": "or", "!": "not",
}


@dataclass(frozen=True)
class _Token:
    kind: str  # op, name, string, number, datetime, date, guid, range, end
    text: str
    value: Any
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise FilterSyntaxError(f"unexpected character {text[position]!r}", text, position)
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "sstring":
            # An enum literal is a qualified name immediately followed by a quoted symbol.
            tokens.append(_Token("string", raw, raw[1:-1].replace("''", "'"), position))
        elif kind == "dstring":
            tokens.append(_Token("string", raw, re.sub(r"\\(.)", r"\1", raw[1:-1]), position))
        elif kind == "op":
            tokens.append(_Token("op", raw, _SYMBOL_OPS.get(raw, raw), position))
        elif kind == "name" and raw in _WORD_OPS | {"true", "false", "null"}:
            kind = "op" if raw in _WORD_OPS else "keyword"
            tokens.append(_Token(kind, raw, raw, position))
        elif kind != "ws":
            tokens.append(_Token(kind, raw, raw, position))
        position = match.end()
    tokens.append(_Token("end", "", None, len(text)))
    return tokens


# ---------------------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token.kind == "op" and token.value == value:
            self.index += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            self.fail(f"expected {value!r}")

    def fail(self, message: str) -> None:
        token = self.peek()
        found = f"found {token.text!r}" if token.kind != "end" else "found the end"
        raise FilterSyntaxError(f"{message}, {found}", self.text, token.position)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            self.fail("empty filter")
        node = self.parse_or()
        if self.peek().kind != "end":
            self.fail("unexpected text after the filter")
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.accept("or"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(_flatten(Or, items)))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.accept("and"):
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(_flatten(And, items)))

    def parse_not(self) -> Node:
        if self.accept("not"):
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        if self.accept("("):
            node = self.parse_or()
            self.expect(")")
            return node
        token = self.peek()
        if token.kind == "name" and self.peek(1).kind == "op" and self.peek(1).value == "(":
            return self.parse_call()
        field = self.parse_field()
        op_token = self.peek()
        if op_token.kind != "op" or op_token.value not in {"eq", "ne", "gt", "ge", "lt", "le"}:
            self.fail(f"expected a comparison operator after {field!r}")
        self.take()
        op: Op = op_token.value
        value = self.parse_value()
        if self.peek().kind == "range":
            self.take()
            if op != "eq":
                self.fail("a range needs '=='")
            return Between(field, value, self.parse_value())
        if self.peek().kind == "op" and self.peek().value == ",":
            values = [value]
            while self.accept(","):
                values.append(self.parse_value())
            if op != "eq":
                self.fail("a list of values needs '=='")
            return AnyOf(field, tuple(values))
        return Comparison(field, op, value)

    def parse_call(self) -> Node:
        name = self.take().text
        if name not in ("contains", "startswith", "endswith"):
            self.fail(f"unsupported function {name!r} (contains, startswith, endswith are)")
        self.expect("(")
        field = self.parse_field()
        self.expect(",")
        token = self.take()
        if token.kind != "string":
            self.index -= 1
            self.fail(f"{name} needs a quoted text as second argument")
        self.expect(")")
        return StringCall(name, field, token.value)  # type: ignore[arg-type]

    def parse_field(self) -> str:
        token = self.peek()
        if token.kind != "name":
            self.fail("expected a field name")
        if "/" in token.text:
            self.fail(f"nested lookup {token.text!r} is not supported in filters; use columns of the table")
        self.take()
        # F&O range expressions may qualify the field with its table (CustTable.Blocked).
        return token.text.rsplit(".", 1)[-1]

    def parse_value(self) -> Value:
        token = self.take()
        if token.kind == "string":
            return token.value
        if token.kind == "keyword":
            return {"true": True, "false": False, "null": None}[token.value]
        if token.kind == "number":
            return int(token.text) if re.fullmatch(r"[+-]?\d+", token.text) else Decimal(token.text)
        if token.kind == "datetime":
            return coerce("datetime", token.text)
        if token.kind == "date":
            return date.fromisoformat(token.text)
        if token.kind == "guid":
            return str(uuid.UUID(token.text))
        if token.kind == "name":
            nxt = self.peek()
            if nxt.kind == "string" and nxt.position == token.position + len(token.text):
                self.take()  # OData enum literal: Namespace.EnumType'Symbol'
                return EnumSymbol(nxt.value, token.text.rsplit(".", 1)[-1])
            if nxt.kind == "op" and nxt.value == "::":
                self.take()
                symbol = self.take()
                if symbol.kind != "name":
                    self.index -= 1
                    self.fail("expected an enum symbol after '::'")
                return EnumSymbol(symbol.text, token.text)
            return EnumSymbol(token.text)
        self.index -= 1
        self.fail("expected a value")
        raise AssertionError("unreachable")


def _flatten(kind: type[And] | type[Or], items: Sequence[Node]) -> list[Node]:
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else [item])
    return flat


@lru_cache(maxsize=1024)
def parse_filter(text: str) -> Node:
    """Parse an OData `$filter` or an F&O range expression into the filter AST."""
    return _Parser(text).parse()


def filter_fields(node: Node) -> set[str]:
    """The fields a filter reads."""
    if isinstance(node, And | Or):
        return set().union(*(filter_fields(item) for item in node.items))
    if isinstance(node, Not):
        return filter_fields(node.item)
    return {node.field}


# ------------------------------------------------------------------------------------- evaluation

EnumMembers = Mapping[str, Sequence[str]]  # enum type -> symbols in value order


def evaluate(node: Node, record: Mapping[str, Any], enum_members: EnumMembers | None = None) -> bool:
    """Whether `record` passes the filter. A field the record lacks is an error, not a silent
    pass or fail: the caller should read the whole row and evaluate again."""
    if isinstance(node, And):
        return all(evaluate(item, record, enum_members) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, record, enum_members) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, record, enum_members)
    if node.field not in record:
        raise FilterError(f"the record has no value for filter field {node.field!r}")
    actual = record[node.field]
    if isinstance(node, Comparison):
        return _compare(actual, node.op, node.value, node.field)
    if isinstance(node, AnyOf):
        return any(_compare(actual, "eq", value, node.field) for value in node.values)
    if isinstance(node, Between):
        low, high = node.low, node.high
        if isinstance(low, EnumSymbol) or isinstance(high, EnumSymbol):
            return _enum_between(actual, low, high, node.field, enum_members)
        return _compare(actual, "ge", low, node.field) and _compare(actual, "le", high, node.field)
    if actual is None:
        return False
    text, fragment = _text(actual, node.field).casefold(), node.value.casefold()
    return {"contains": fragment in text, "startswith": text.startswith(fragment),
            "endswith": text.endswith(fragment)}[node.function]


def _compare(actual: Any, op: Op, expected: Value, field: str) -> bool:
    if expected is None or actual is None:
        if op in ("eq", "ne"):
            return (actual is expected) == (op == "eq") if expected is None else op == "ne"
        return False
    if isinstance(expected, EnumSymbol):
        if op not in ("eq", "ne"):
            raise FilterError(f"enum field {field!r} can only be compared with eq/ne")
        same = _text(actual, field).casefold() == expected.symbol.casefold()
        return same == (op == "eq")
    left, right = _comparable(actual, expected, field)
    return {"eq": left == right, "ne": left != right, "gt": left > right, "ge": left >= right,
            "lt": left < right, "le": left <= right}[op]


def _comparable(actual: Any, expected: Value, field: str) -> tuple[Any, Any]:
    try:
        if isinstance(expected, bool):
            return coerce("boolean", actual), expected
        if isinstance(expected, int | Decimal):
            return coerce("decimal", actual), Decimal(expected)
        if isinstance(expected, datetime):
            return coerce("datetime", actual), expected
        if isinstance(expected, date):
            return coerce("date", actual), expected
    except MapValueError as error:
        raise FilterError(f"filter field {field!r}: {error}") from None
    return _text(actual, field).casefold(), str(expected).casefold()


def _text(actual: Any, field: str) -> str:
    if isinstance(actual, str):
        return actual
    raise FilterError(f"filter field {field!r} holds {actual!r}, not text")


def _enum_between(actual: Any, low: Value, high: Value, field: str, enum_members: EnumMembers | None) -> bool:
    members = _members_between(low, high, field, enum_members)
    return actual is not None and _text(actual, field).casefold() in {m.casefold() for m in members}


def _members_between(low: Value, high: Value, field: str, enum_members: EnumMembers | None) -> list[str]:
    enum_type = next((v.enum_type for v in (low, high) if isinstance(v, EnumSymbol) and v.enum_type), None)
    members = (enum_members or {}).get(enum_type or "")
    if not members:
        raise FilterError(f"range on enum field {field!r} needs the members of enum {enum_type or '?'}")
    folded = [m.casefold() for m in members]
    try:
        start = folded.index(str(getattr(low, "symbol", low)).casefold())
        end = folded.index(str(getattr(high, "symbol", high)).casefold())
    except ValueError:
        raise FilterError(f"range on {field!r} names a symbol that enum {enum_type} lacks") from None
    return list(members[start : end + 1])


# -------------------------------------------------------------------------------------- rendering


def render(
    node: Node,
    dialect: Literal["dataverse", "fno"] = "dataverse",
    *,
    enum_types: Mapping[str, str] | None = None,
    enum_members: EnumMembers | None = None,
    namespace: str = DEFAULT_ENUM_NAMESPACE,
) -> str:
    """The filter as OData `$filter` text for push-down to `dialect`.

    `enum_types` (field -> enum type, from F&O metadata) qualifies bare enum symbols; F&O's
    OData has no contains/startswith, so those become its `eq '*x*'` wildcard form there."""
    fields_enum = dict(enum_types or {})

    def literal(field: str, value: Value) -> str:
        if isinstance(value, EnumSymbol):
            enum_type = value.enum_type or fields_enum.get(field)
            if enum_type is None:
                return _quote(value.symbol)
            return f"{namespace}.{enum_type}'{value.symbol}'"
        return _literal(value)

    def go(item: Node, parent: str) -> str:
        if isinstance(item, And | Or):
            word = " and " if isinstance(item, And) else " or "
            text = word.join(go(child, type(item).__name__) for child in item.items)
            return f"({text})" if isinstance(item, Or) and parent in ("And", "Not") else text
        if isinstance(item, Not):
            return f"not ({go(item.item, 'Not')})"
        if isinstance(item, Comparison):
            return f"{item.field} {item.op} {literal(item.field, item.value)}"
        if isinstance(item, AnyOf):
            return go(Or(tuple(Comparison(item.field, "eq", v) for v in item.values)), parent)
        if isinstance(item, Between):
            if isinstance(item.low, EnumSymbol) or isinstance(item.high, EnumSymbol):
                # F&O enums support only eq/ne, so a symbol range becomes a list.
                symbols = _members_between(item.low, item.high, item.field, enum_members)
                enum_type = next(v.enum_type for v in (item.low, item.high) if isinstance(v, EnumSymbol))
                return go(AnyOf(item.field, tuple(EnumSymbol(s, enum_type) for s in symbols)), parent)
            return go(And((Comparison(item.field, "ge", item.low), Comparison(item.field, "le", item.high))), parent)
        if dialect == "fno":
            pattern = {"contains": "*{}*", "startswith": "{}*", "endswith": "*{}"}[item.function]
            return f"{item.field} eq {_quote(pattern.format(item.value))}"
        return f"{item.function}({item.field},{_quote(item.value)})"

    return go(node, "")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _literal(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return _quote(str(value))
