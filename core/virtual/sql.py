"""SQL source through SQLAlchemy Core: every filter, order and page runs in the database as one parameterised
statement (values are bound parameters, never text in the SQL, so a `$filter` value cannot change the query).

The statements are built from the definition's columns (no reflection), so the database is asked nothing it was
not told about. SQLAlchemy's engine is synchronous here: calls run in a worker thread, the event loop stays free.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from core.virtual.filter import And, Call, Compare, Const, Node, Not, Or, negated
from core.virtual.model import Column, VirtualTable
from core.virtual.source import Order, Row, SourceError, VirtualSource


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC where the database has an exact one; on SQLite (whose NUMERIC keeps 15 digits as a double) the
    decimal's text, so money keeps every digit. SQLite filters then compare text cast to a number (CAST(... AS
    REAL)): exact storage, double-precision comparison (see sql_column)."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String())
        return dialect.type_descriptor(sa.Numeric(38, 10, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return format(Decimal(value), "f") if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; stored as UTC (naive where the database has no offsets, e.g. SQLite)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: virtual table datetimes are timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_TYPES: dict[str, Any] = {
    "Edm.Boolean": sa.Boolean,
    "Edm.DateTime": UtcDateTime,
    "Edm.DateTimeOffset": UtcDateTime,
    "Edm.Decimal": ExactDecimal,
    "Edm.Double": sa.Float,
    "Edm.Guid": sa.Uuid,
    "Edm.Int32": sa.Integer,
    "Edm.Int64": sa.BigInteger,
    "Edm.String": sa.String,
}


def sql_table(
    table: VirtualTable, table_name: str, schema: str | None = None, metadata: sa.MetaData | None = None
) -> sa.Table:
    """The SQLAlchemy table the definition describes (also what the demo database is created from)."""
    columns = []
    key_names = {table.key.column} if table.key.kind == "column" else set(table.key.columns)
    for column in table.columns:
        kind = _TYPES[column.type]
        sql_type = kind(column.max_length) if column.type == "Edm.String" and column.max_length else kind()
        primary = column.name in key_names  # the demo tables get the key as their primary key (duplicates: 409)
        columns.append(
            sa.Column(column.source_name, sql_type, key=column.name, nullable=column.nullable, primary_key=primary)
        )
    return sa.Table(table_name, metadata or sa.MetaData(), *columns, schema=schema)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlSource(VirtualSource):
    def __init__(self, table: VirtualTable, engine: Engine, table_name: str, schema: str | None = None) -> None:
        self.table = table
        self.engine = engine
        self.sql = sql_table(table, table_name, schema)
        self.key_names = [table.key.column] if table.key.kind == "column" else list(table.key.columns)

    # ---- filters as SQL --------------------------------------------------------------------------------------------

    def pushable(self, node: Node) -> bool:
        return True  # every $filter this service parses has a SQL form

    def orders(self, orderby: Order) -> bool:
        return True

    def sql_column(self, name: str) -> Any:
        column = self.sql.c[name]
        definition: Column | None = self.table.column(name)
        if definition is not None and definition.type == "Edm.Decimal" and self.engine.dialect.name == "sqlite":
            return sa.cast(column, sa.Float)  # stored as exact text; compared as a number
        return column

    def clause(self, node: Node) -> Any:
        match node:
            case Const():
                return sa.true() if node.value else sa.false()
            case And():
                return sa.and_(self.clause(node.left), self.clause(node.right))
            case Or():
                return sa.or_(self.clause(node.left), self.clause(node.right))
            case Not() if isinstance(node.operand, Call):  # not contains(x,'a') holds for a null x
                return sa.or_(sa.not_(self.clause(node.operand)), self.sql.c[node.operand.column].is_(None))
            case Not():
                # Pushed down to the comparisons (filter.negated): portable SQL, never NOT over an unknown.
                return self.clause(negated(node.operand))
            case Call():
                column = self.sql.c[node.column]
                pattern = _escape_like(node.value)
                pattern = {"contains": f"%{pattern}%", "startswith": f"{pattern}%", "endswith": f"%{pattern}"}[
                    node.name
                ]
                return column.ilike(pattern, escape="\\")
            case Compare():
                column = self.sql_column(node.column)
                if node.value is None:
                    return (
                        self.sql.c[node.column].is_(None) if node.op == "eq" else self.sql.c[node.column].is_not(None)
                    )
                value = float(node.value) if isinstance(column, sa.Cast) else node.value
                compare = {
                    "eq": column.__eq__,
                    "ne": column.__ne__,
                    "gt": column.__gt__,
                    "ge": column.__ge__,
                    "lt": column.__lt__,
                    "le": column.__le__,
                }[node.op](value)
                if node.op == "ne":  # OData: a null is not equal to 1; SQL's null <> 1 is unknown
                    return sa.or_(compare, self.sql.c[node.column].is_(None))
                return compare
        raise TypeError(f"not a filter node: {node!r}")

    # ---- reads -----------------------------------------------------------------------------------------------------

    def _row(self, mapping: Any) -> Row:
        return {c.name: mapping[c.name] for c in self.table.columns}

    def _run(self, statement: Any) -> list[Row]:
        try:
            with self.engine.connect() as connection:
                return [self._row(r._mapping) for r in connection.execute(statement)]
        except SQLAlchemyError as error:
            raise SourceError(502, f"the SQL database failed: {type(error).__name__}") from error

    async def rows(self, where: Node | None, orderby: Order, offset: int, limit: int | None) -> list[Row]:
        statement = sa.select(self.sql)
        if where is not None:
            statement = statement.where(self.clause(where))
        for name, descending in orderby:
            column = self.sql_column(name)
            statement = statement.order_by(column.desc() if descending else column.asc())
        if limit is not None:
            statement = statement.limit(limit)
        if offset:
            statement = statement.offset(offset)
        return await asyncio.to_thread(self._run, statement)

    async def count(self, where: Node | None) -> int:
        statement = sa.select(sa.func.count()).select_from(self.sql)
        if where is not None:
            statement = statement.where(self.clause(where))

        def run() -> int:
            try:
                with self.engine.connect() as connection:
                    return int(connection.execute(statement).scalar_one())
            except SQLAlchemyError as error:
                raise SourceError(502, f"the SQL database failed: {type(error).__name__}") from error

        return await asyncio.to_thread(run)

    def _by_key(self, key: Mapping[str, Any]) -> Any:
        return sa.and_(*(self.sql.c[name] == key[name] for name in self.key_names))

    async def get(self, key: Mapping[str, Any]) -> Row | None:
        found = await asyncio.to_thread(self._run, sa.select(self.sql).where(self._by_key(key)))
        return found[0] if found else None

    # ---- writes ----------------------------------------------------------------------------------------------------

    def _write(self, statement: Any) -> int:
        try:
            with self.engine.begin() as connection:
                return int(connection.execute(statement).rowcount)
        except IntegrityError as error:
            raise SourceError(
                409,
                "the SQL database refused the row: a row with this key exists already, or a "
                f"required value is missing ({type(error.orig).__name__})",
            ) from error
        except SQLAlchemyError as error:
            raise SourceError(502, f"the SQL database failed: {type(error).__name__}") from error

    async def create(self, values: Mapping[str, Any]) -> Row:
        values = dict(values)
        if self.table.key.kind == "column" and values.get(self.table.key.column) is None:
            values[self.table.key.column] = uuid.uuid4()  # Dataverse may leave the id to the service
        await asyncio.to_thread(self._write, sa.insert(self.sql).values(values))
        created = await self.get({name: values.get(name) for name in self.key_names})
        assert created is not None
        return created

    async def update(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
        if not values:
            return await self.get(key) is not None
        count = await asyncio.to_thread(self._write, sa.update(self.sql).where(self._by_key(key)).values(values))
        return count > 0

    async def delete(self, key: Mapping[str, Any]) -> bool:
        return await asyncio.to_thread(self._write, sa.delete(self.sql).where(self._by_key(key))) > 0

    async def aclose(self) -> None:
        self.engine.dispose()
