"""OData v4 `$filter`: a small tokenizer and recursive-descent parser into a typed tree, and its evaluation in Python.

Supported (what Dataverse's grids and lookups send, and what users type): eq ne gt ge lt le, and/or/not, parentheses,
contains/startswith/endswith, null, and string ('O''Neil'), number, guid, datetime and bool literals. A comparison
is always a property against a literal (`3 lt Price` is turned round); the literal is converted to the property's
EDM type here, so the sources get Python values (never text to paste into a query).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from core.errors import BadInput
from core.virtual.model import Column, VirtualTable

CompareOp = Literal["eq", "ne", "gt", "ge", "lt", "le"]
FunctionName = Literal["contains", "startswith", "endswith"]
_FLIP: dict[str, CompareOp] = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
FILTER = "$filter"


@dataclass(frozen=True)
class Compare:
    op: CompareOp
    column: str  # OData property name
    value: Any  # typed to the column's EDM type; None is null


@dataclass(frozen=True)
class Call:
    name: FunctionName
    column: str
    value: str


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Const:
    """Always true or always false: what an id comparison becomes when the id is unknown (core.virtual.service)."""

    value: bool


Node = Compare | Call | And | Or | Not | Const


def simplify(node: Node) -> Node:
    """The same condition with every Const folded away, or a single Const when the whole is decided."""
    match node:
        case And() | Or():
            left, right = simplify(node.left), simplify(node.right)
            absorbing = isinstance(node, Or)  # true absorbs an or, false an and
            for side, other in ((left, right), (right, left)):
                if isinstance(side, Const):
                    return side if side.value is absorbing else other
            return And(left, right) if isinstance(node, And) else Or(left, right)
        case Not():
            inner = simplify(node.operand)
            return Const(not inner.value) if isinstance(inner, Const) else Not(inner)
    return node


_OPPOSITE: dict[str, CompareOp] = {"eq": "ne", "ne": "eq", "gt": "le", "ge": "lt", "lt": "ge", "le": "gt"}


def negated(node: Node) -> Node:
    """`not node` with the not pushed down to the comparisons, as OData means it: a comparison with a null is false,
    so its negation holds for a null (`not (x gt 1)` is `x le 1 or x eq null`). Only `not` of a text function stays
    (Not(Call)). What a source gets then needs no NOT over an unknown, which SQL answers with unknown."""
    match node:
        case Const():
            return Const(not node.value)
        case Not():
            return node.operand
        case And():
            return Or(negated(node.left), negated(node.right))
        case Or():
            return And(negated(node.left), negated(node.right))
        case Compare() if node.value is None:
            return Compare(_OPPOSITE[node.op], node.column, None)
        case Compare() if node.op in ("eq", "ne"):  # x ne 1 holds for a null x, x eq 1 does not: they swap
            return Compare(_OPPOSITE[node.op], node.column, node.value)
        case Compare():
            return Or(Compare(_OPPOSITE[node.op], node.column, node.value), Compare("eq", node.column, None))
    return Not(node)


def walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, And | Or):
        yield from walk(node.left)
        yield from walk(node.right)
    elif isinstance(node, Not):
        yield from walk(node.operand)


def conjuncts(node: Node | None) -> list[Node]:
    """The top-level `and` parts: each may be pushed to the source or kept for Python on its own."""
    if node is None:
        return []
    if isinstance(node, And):
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


def all_of(nodes: list[Node]) -> Node | None:
    result: Node | None = None
    for node in nodes:
        result = node if result is None else And(result, node)
    return result


# ---- tokens -------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<typed>(?:guid|datetime|datetimeoffset)'[^']*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?(?![\w-]))
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w.]))
  | (?P<paren>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    at = 0
    while at < len(text):
        found = _TOKEN.match(text, at)
        if found is None:
            raise BadInput(
                FILTER,
                f"$filter cannot be read at position {at + 1}: {text[at : at + 20]!r} (strings go "
                "in single quotes, a quote inside one is written twice: 'O''Neil')",
            )
        kind = found.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, found.group(), at))
        at = found.end()
    return tokens


# ---- raw tree (before typing) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    kind: str  # string number guid datetime bool null
    value: Any
    text: str


@dataclass(frozen=True)
class _Property:
    name: str


@dataclass(frozen=True)
class _Function:
    name: str
    args: tuple[Any, ...]


_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith"}


class _Parser:
    def __init__(self, text: str, table: VirtualTable) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.table = table

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise BadInput(FILTER, "$filter ends too early: an expression is missing at the end")
        self.at += 1
        return token

    def word(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text in words:
            self.at += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise BadInput(FILTER, "$filter is empty")
        node = self.or_()
        extra = self.peek()
        if extra is not None:
            raise BadInput(
                FILTER,
                f"$filter: unexpected {extra.text!r} at position {extra.at + 1} (operators are "
                "written eq ne gt ge lt le and or not, in lower case)",
            )
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.word("or"):
            node = Or(node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.word("and"):
            node = And(node, self.not_())
        return node

    def not_(self) -> Node:
        if self.word("not"):
            return Not(self.not_())
        return self.compare()

    def compare(self) -> Node:
        left = self.primary()
        token = self.peek()
        if (
            token is not None
            and token.kind == "word"
            and token.text != token.text.lower()
            and token.text.lower() in _COMPARE | {"and", "or"}
        ):
            raise BadInput(
                FILTER,
                f"$filter: {token.text!r} at position {token.at + 1}: operators are written in "
                f"lower case ({token.text.lower()})",
            )
        if token is not None and token.kind == "word" and token.text in _COMPARE:
            self.at += 1
            right = self.primary()
            return self.typed_compare(token.text, left, right)
        if isinstance(left, Node):  # a parenthesised expression or a function call
            return left
        if isinstance(left, _Property):  # a bare Boolean property means `is true`
            column = self.column_of(left.name)
            if column.type == "Edm.Boolean":
                return Compare("eq", column.name, True)
            raise BadInput(FILTER, f"$filter: {left.name} alone is no condition; compare it, e.g. {left.name} eq ...")
        raise BadInput(FILTER, f"$filter: {left.text!r} alone is no condition")

    def primary(self) -> Any:
        token = self.next()
        if token.kind == "paren" and token.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if token.kind == "word" and token.text in _FUNCTIONS and self.peek_text() == "(":
            self.at += 1
            args = [self.primary()]
            while self.peek_text() == ",":
                self.at += 1
                args.append(self.primary())
            self.expect(")")
            return self.typed_call(token.text, args)
        if token.kind == "word":
            if token.text in ("true", "false"):
                return _Literal("bool", token.text == "true", token.text)
            if token.text == "null":
                return _Literal("null", None, token.text)
            if token.text in _COMPARE | {"and", "or", "not"}:
                raise BadInput(FILTER, f"$filter: {token.text!r} at position {token.at + 1} needs something before it")
            return _Property(token.text)
        if token.kind == "string":
            return _Literal("string", token.text[1:-1].replace("''", "'"), token.text)
        if token.kind == "number":
            return _Literal("number", token.text.rstrip("mMdDfFlL"), token.text)
        if token.kind == "guid":
            return _Literal("guid", token.text, token.text)
        if token.kind == "datetime":
            return _Literal("datetime", token.text, token.text)
        if token.kind == "typed":
            prefix, _, rest = token.text.partition("'")
            return _Literal("guid" if prefix == "guid" else "datetime", rest[:-1], token.text)
        raise BadInput(FILTER, f"$filter: unexpected {token.text!r} at position {token.at + 1}")

    def peek_text(self) -> str | None:
        token = self.peek()
        return token.text if token is not None else None

    def expect(self, text: str) -> None:
        if self.peek() is None:
            raise BadInput(FILTER, f"$filter ends too early: {text!r} is missing at the end")
        token = self.next()
        if token.text != text:
            raise BadInput(FILTER, f"$filter: expected {text!r} at position {token.at + 1}, found {token.text!r}")

    def column_of(self, name: str) -> Column:
        column = self.table.column(name)
        if column is None:
            if name == self.table.id_name:  # a derived id: the service turns it into the key (resolve_ids)
                return Column(name=name, type="Edm.Guid", nullable=False)
            known = ", ".join(c.name for c in self.table.columns)
            raise BadInput(FILTER, f"$filter: {self.table.entity_set} has no property {name!r} (it has {known})")
        if not column.filterable:
            raise BadInput(
                FILTER,
                f"$filter: {self.table.entity_set}.{name} cannot be filtered on (the definition "
                "marks it not filterable)",
            )
        return column

    def typed_compare(self, op: str, left: Any, right: Any) -> Node:
        if isinstance(right, _Property) and isinstance(left, _Literal):
            left, right, op = right, left, _FLIP[op]
        if not isinstance(left, _Property) or not isinstance(right, _Literal):
            raise BadInput(
                FILTER,
                f"$filter: {op} compares a property with a value (e.g. Name eq 'x'); two "
                "properties or two values cannot be compared",
            )
        column = self.column_of(left.name)
        if right.kind == "null":
            if op not in ("eq", "ne"):
                raise BadInput(FILTER, f"$filter: null can only be compared with eq or ne, not {op}")
            return Compare(op, column.name, None)  # type: ignore[arg-type]
        if op not in ("eq", "ne") and column.type in ("Edm.Boolean", "Edm.Guid"):
            raise BadInput(FILTER, f"$filter: {column.name} is {column.type}; only eq and ne compare it")
        return Compare(op, column.name, literal_value(column, right))  # type: ignore[arg-type]

    def typed_call(self, name: str, args: list[Any]) -> Node:
        if len(args) != 2 or not isinstance(args[0], _Property) or not isinstance(args[1], _Literal):
            raise BadInput(FILTER, f"$filter: {name} takes a property and a string, e.g. {name}(Name,'abc')")
        column = self.column_of(args[0].name)
        if column.type != "Edm.String" or args[1].kind != "string":
            raise BadInput(FILTER, f"$filter: {name} works on text; {column.name} is {column.type}")
        return Call(name, column.name, args[1].value)  # type: ignore[arg-type]


def literal_value(column: Column, literal: Any) -> Any:
    """The literal as the column's Python value; a BadInput naming the property when it is of another type."""
    kind, text = literal.kind, literal.text

    def wrong() -> BadInput:
        return BadInput(FILTER, f"$filter: {text} is no {column.type[4:]} value for {column.name}")

    match column.type:
        case "Edm.String":
            if kind != "string":
                raise wrong()
            return literal.value
        case "Edm.Boolean":
            if kind != "bool":
                raise wrong()
            return literal.value
        case "Edm.Int32" | "Edm.Int64":
            if kind != "number" or not re.fullmatch(r"-?\d+", literal.value):
                raise wrong()
            number = int(literal.value)
            bits = 31 if column.type == "Edm.Int32" else 63
            if not -(2**bits) <= number < 2**bits:
                raise wrong()
            return number
        case "Edm.Decimal" | "Edm.Double":
            if kind != "number":
                raise wrong()
            try:
                return Decimal(literal.value) if column.type == "Edm.Decimal" else float(literal.value)
            except (InvalidOperation, ValueError):
                raise wrong() from None
        case "Edm.Guid":
            if kind not in ("guid", "string"):
                raise wrong()
            try:
                return uuid.UUID(literal.value)
            except ValueError:
                raise wrong() from None
        case "Edm.DateTimeOffset" | "Edm.DateTime":
            if kind not in ("datetime", "string"):
                raise wrong()
            return parse_datetime(literal.value, wrong)
    raise wrong()


def parse_datetime(text: str, error: Callable[[], Exception]) -> datetime:
    """ISO 8601 as a timezone-aware UTC datetime (a date or a time without offset counts as UTC)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise error() from None
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).astimezone(UTC)


MAX_FILTER = 8000  # characters: far beyond what a grid or a person writes, short of what could hurt the parser


def parse_filter(text: str, table: VirtualTable) -> Node:
    if len(text) > MAX_FILTER:
        raise BadInput(FILTER, f"$filter is {len(text)} characters long; at most {MAX_FILTER} are taken")
    try:
        return _Parser(text, table).parse()
    except RecursionError:
        raise BadInput(FILTER, "$filter is nested too deeply (parentheses or not inside not)") from None


# ---- evaluation in Python (what a source cannot run, on a bounded set of rows) ---------------------------------------


def _ordered(left: Any, right: Any, op: str) -> bool:
    if left is None or right is None:  # OData: null compares equal to null only; ordering with null is false
        return False
    match op:
        case "gt":
            return bool(left > right)
        case "ge":
            return bool(left >= right)
        case "lt":
            return bool(left < right)
        case _:
            return bool(left <= right)


def matches(node: Node, row: Mapping[str, Any]) -> bool:
    """Whether a row (OData names -> typed values) passes. Text functions compare case-insensitively, as SQL Server
    and Dataverse do with their default collations."""
    match node:
        case Const():
            return node.value
        case And():
            return matches(node.left, row) and matches(node.right, row)
        case Or():
            return matches(node.left, row) or matches(node.right, row)
        case Not():
            return not matches(node.operand, row)
        case Call():
            value = row.get(node.column)
            if value is None:
                return False
            text, needle = str(value).lower(), node.value.lower()
            if node.name == "contains":
                return needle in text
            return text.startswith(needle) if node.name == "startswith" else text.endswith(needle)
        case Compare():
            value = row.get(node.column)
            if node.op == "eq":
                return bool(value == node.value)
            if node.op == "ne":
                return bool(value != node.value)
            return _ordered(value, node.value, node.op)
    raise TypeError(f"not a filter node: {node!r}")
