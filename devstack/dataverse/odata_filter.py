"""`$filter` of the Web API: parse to a small AST and evaluate it in Python against a row.

Supported: eq ne gt ge lt le, and or not, parentheses, contains/startswith/endswith, null, strings,
numbers, booleans, guids and datetimes; lookups by `_x_value`. String comparison is case-insensitive,
like Dataverse's SQL collation."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from devstack.dataverse.errors import bad_request
from devstack.dataverse.schema import Column, Table, format_datetime, parse_datetime

TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*'|"(?:[^"\\]|\\.)*")
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])
    | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)(?![\w-])
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)[mMdDfFlL]?(?![\w])
    | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<punct>[(),=\[\]])
    )""",
    re.VERBOSE,
)
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
FUNCTIONS = {"contains", "startswith", "endswith"}
# Dataverse query functions (Microsoft.Dynamics.CRM.<name>) the simulator evaluates.
CRM_FUNCTIONS = {"In", "NotIn", "Between", "NotBetween", "Null", "NotNull"}
CRM_PREFIX = "Microsoft.Dynamics.CRM."


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Prop:
    column: Column


@dataclass(frozen=True)
class Compare:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or"
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class CrmCall:
    """`Microsoft.Dynamics.CRM.In(PropertyName='x',PropertyValues=['a','b'])` and friends."""

    name: str
    column: Column
    values: tuple[Any, ...]


class _Parser:
    def __init__(self, text: str, table: Table) -> None:
        self.table = table
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise bad_request(f"Syntax error at position {pos} in '{text}'.")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0
        self.text = text

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise bad_request(f"Syntax error: unexpected end of '$filter={self.text}'.")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        _kind, text = self.take()
        if text != value:
            raise bad_request(f"Syntax error: expected '{value}' but found '{text}' in '$filter={self.text}'.")

    def word(self, *words: str) -> str | None:
        tok = self.peek()
        if tok and tok[0] == "name" and tok[1] in words:
            self.i += 1
            return tok[1]
        return None

    def parse(self) -> Any:
        node = self.or_expr()
        if self.peek() is not None:
            raise bad_request(f"Syntax error at '{self.peek()[1]}' in '$filter={self.text}'.")  # type: ignore[index]
        return node

    def or_expr(self) -> Any:
        node = self.and_expr()
        while self.word("or"):
            node = Logical("or", node, self.and_expr())
        return node

    def and_expr(self) -> Any:
        node = self.unary()
        while self.word("and"):
            node = Logical("and", node, self.unary())
        return node

    def unary(self) -> Any:
        if self.word("not"):
            return Not(self.unary())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        op = self.word(*COMPARISONS)
        if op is None:
            if isinstance(left, Call | CrmCall | Logical | Not | Compare):
                return left
            raise bad_request(f"Syntax error: a comparison operator is expected in '$filter={self.text}'.")
        right = self.primary()
        return Compare(op, left, right)

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "punct" and text == "(":
            node = self.or_expr()
            self.expect(")")
            return node
        if kind == "string":
            if text.startswith('"'):
                return Literal(json.loads(text))
            return Literal(text[1:-1].replace("''", "'"))
        if kind == "guid":
            return Literal(str(uuid.UUID(text)))
        if kind == "datetime":
            return Literal(format_datetime(parse_datetime(text), date_only="T" not in text))
        if kind == "number":
            return Literal(Decimal(text))
        if kind == "name":
            if text in ("true", "false"):
                return Literal(text == "true")
            if text == "null":
                return Literal(None)
            if text.startswith(CRM_PREFIX):
                return self.crm_call(text[len(CRM_PREFIX):])
            if text in FUNCTIONS:
                self.expect("(")
                args = [self.primary()]
                while self.peek() == ("punct", ","):
                    self.take()
                    args.append(self.primary())
                self.expect(")")
                if len(args) != 2 or not isinstance(args[0], Prop) or not isinstance(args[1], Literal):
                    raise bad_request(f"'{text}' takes a property and a string literal.")
                return Call(text, tuple(args))
            column = self.table.by_value_property.get(text)
            if column is None:
                raise bad_request(
                    f"Could not find a property named '{text}' on type "
                    f"'Microsoft.Dynamics.CRM.{self.table.logical_name}'."
                )
            return Prop(column)
        raise bad_request(f"Syntax error at '{text}' in '$filter={self.text}'.")


    def crm_call(self, name: str) -> CrmCall:
        if name not in CRM_FUNCTIONS:
            raise bad_request(f"The query function 'Microsoft.Dynamics.CRM.{name}' is not supported by the simulator.")
        self.expect("(")
        args: dict[str, Any] = {}
        while True:
            _, param = self.take()
            self.expect("=")
            if self.peek() == ("punct", "["):
                self.take()
                items: list[Any] = []
                while self.peek() != ("punct", "]"):
                    item = self.primary()
                    if not isinstance(item, Literal):
                        raise bad_request(f"PropertyValues of '{name}' must be literals.")
                    items.append(item.value)
                    if self.peek() == ("punct", ","):
                        self.take()
                self.take()
                args[param] = items
            else:
                value = self.primary()
                if not isinstance(value, Literal):
                    raise bad_request(f"'{param}' of '{name}' must be a literal.")
                args[param] = value.value
            if self.peek() == ("punct", ","):
                self.take()
                continue
            self.expect(")")
            break
        prop = args.get("PropertyName")
        column = self.table.by_value_property.get(prop) if isinstance(prop, str) else None
        if column is None:
            raise bad_request(f"Could not find a property named '{prop}' on type "
                              f"'Microsoft.Dynamics.CRM.{self.table.logical_name}'.")
        values = args.get("PropertyValues", [])
        if name in ("Between", "NotBetween") and len(values) != 2:
            raise bad_request(f"'{name}' needs exactly two PropertyValues.")
        return CrmCall(name, column, tuple(_typed(column, v) for v in values))


def _typed(column: Column, value: Any) -> Any:
    """Query-function values arrive as strings; compare them as the column's type."""
    if not isinstance(value, str):
        return value
    if column.type in ("integer", "bigint", "decimal", "money", "double", "choice", "state", "status"):
        try:
            return Decimal(value)
        except ArithmeticError:
            raise bad_request(f"'{value}' is not a number for '{column.value_property}'.") from None
    if column.is_lookup or column.type == "uniqueidentifier":
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise bad_request(f"'{value}' is not a guid for '{column.value_property}'.") from None
    if column.type == "datetime":
        return format_datetime(parse_datetime(value), date_only=column.date_only)
    return value


def parse_filter(text: str, table: Table) -> Any:
    return _Parser(text, table).parse()


def comparable(value: Any) -> Any:
    """Normalize for comparison: case-insensitive strings, lookups by id, numbers as Decimal."""
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    return value


def evaluate(node: Any, get: Callable[[Column], Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Prop):
        return get(node.column)
    if isinstance(node, Logical):
        left = bool(evaluate(node.left, get))
        if node.op == "and":
            return left and bool(evaluate(node.right, get))
        return left or bool(evaluate(node.right, get))
    if isinstance(node, Not):
        return not bool(evaluate(node.operand, get))
    if isinstance(node, CrmCall):
        current = comparable(get(node.column))
        wanted = [comparable(v) for v in node.values]
        if node.name == "Null":
            return current is None
        if node.name == "NotNull":
            return current is not None
        if node.name in ("In", "NotIn"):
            return (current in wanted) == (node.name == "In") and current is not None
        inside = current is not None and wanted[0] <= current <= wanted[1]
        return inside if node.name == "Between" else (current is not None and not inside)
    if isinstance(node, Call):
        value = evaluate(node.args[0], get)
        needle = evaluate(node.args[1], get)
        if not isinstance(value, str) or not isinstance(needle, str):
            return False
        value, needle = value.casefold(), needle.casefold()
        if node.name == "contains":
            return needle in value
        if node.name == "startswith":
            return value.startswith(needle)
        return value.endswith(needle)
    assert isinstance(node, Compare)
    left, right = comparable(evaluate(node.left, get)), comparable(evaluate(node.right, get))
    if node.op == "eq":
        return left == right
    if node.op == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        return {
            "gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right,
        }[node.op]
    except TypeError:
        raise bad_request(f"Cannot compare {left!r} with {right!r} using '{node.op}'.") from None
