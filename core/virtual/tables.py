"""Azure Table Storage as a virtual table source (azure-data-tables; Azurite locally).

Comparisons, and/or/not go to the service as a parameterised query filter (the SDK writes each value as a typed,
escaped literal). Table Storage has no contains/startswith/endswith, no null test, no order but its key's
(PartitionKey, RowKey) and no offset: those filters and orders are finished here on a bounded set
(core.virtual.service), and an offset is skipped while reading."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, UpdateMode

from core.store.tables import Tables
from core.virtual.filter import And, Call, Compare, Const, Node, Not, Or, walk
from core.virtual.model import DerivedKey, TablesSource, VirtualTable
from core.virtual.source import Order, Row, SourceError, VirtualSource
from core.virtual.values import from_json


class TableStorageSource(VirtualSource):
    def __init__(self, table: VirtualTable, source: TablesSource, tables: Tables) -> None:
        self.table = table
        self.table_name = source.table
        self.tables = tables
        self.names = {c.name: c.source_name for c in table.columns}
        self.types = {c.name: c.type for c in table.columns}
        self.key_names = table.key.columns if isinstance(table.key, DerivedKey) else [table.key.column]
        by_source = {c.source_name: c.name for c in table.columns}
        self.natural = [(by_source[k], False) for k in ("PartitionKey", "RowKey") if k in by_source]

    def pushable(self, node: Node) -> bool:
        for part in walk(node):
            if isinstance(part, Call | Const):
                return False
            if isinstance(part, Compare) and (
                part.value is None or (self.types[part.column] == "Edm.Decimal" and part.op not in ("eq", "ne"))
            ):
                return False  # no null test; decimals are stored as text, ordered as text
        return True

    def orders(self, orderby: Order) -> bool:
        return list(orderby) == self.natural[: len(orderby)] or list(orderby)[: len(self.natural)] == self.natural

    def query(self, node: Node, parameters: dict[str, Any]) -> str:
        match node:
            case And():
                return f"( {self.query(node.left, parameters)} and {self.query(node.right, parameters)} )"
            case Or():
                return f"( {self.query(node.left, parameters)} or {self.query(node.right, parameters)} )"
            case Not():
                return f"not ( {self.query(node.operand, parameters)} )"
            case Compare():
                name = f"p{len(parameters)}"
                parameters[name] = self._stored(node.column, node.value)
                return f"{self.names[node.column]} {node.op} @{name}"
        raise ValueError(f"Table Storage cannot run {node!r}")

    def _stored(self, column: str, value: Any) -> Any:
        kind = self.types[column]
        if kind == "Edm.Decimal" and value is not None:
            return format(value, "f")
        if kind == "Edm.Int64" and value is not None:
            return EntityProperty(value, EdmType.INT64)
        return value

    def _row(self, entity: Mapping[str, Any]) -> Row:
        row: Row = {}
        for column in self.table.columns:
            value = entity.get(column.source_name)
            if isinstance(value, EntityProperty):
                value = value.value
            if isinstance(value, datetime):
                value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
                row[column.name] = datetime.fromtimestamp(value.timestamp(), UTC)
            elif column.type == "Edm.Decimal" and value is not None:
                row[column.name] = Decimal(str(value))
            elif column.type == "Edm.Guid" and value is not None:
                row[column.name] = uuid.UUID(str(value))
            elif column.type in ("Edm.Int32", "Edm.Int64") and value is not None:
                row[column.name] = int(value)
            else:
                row[column.name] = from_json(column.model_copy(update={"nullable": True}), value)
        return row

    def _entity(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {self.names[name]: self._stored(name, value) for name, value in values.items() if value is not None}

    async def rows(self, where: Node | None, orderby: Order, offset: int, limit: int | None) -> list[Row]:
        client = await self.tables.table(self.table_name)
        select = [c.source_name for c in self.table.columns]
        out: list[Row] = []
        skipped = 0
        try:
            if where is None:
                entities = client.list_entities(select=select, results_per_page=1000)
            else:
                parameters: dict[str, Any] = {}
                text = self.query(where, parameters)
                entities = client.query_entities(text, parameters=parameters, select=select, results_per_page=1000)
            async for entity in entities:
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(self._row(entity))
                if limit is not None and len(out) >= limit:
                    break
        except AzureError as error:
            raise SourceError(502, f"Table Storage failed reading {self.table_name}: {type(error).__name__}") from error
        return out

    async def count(self, where: Node | None) -> int:
        return len(await self.rows(where, [], 0, None))

    def _pk_rk(self, key: Mapping[str, Any]) -> tuple[str, str]:
        entity = self._entity(key)
        return str(entity["PartitionKey"]), str(entity["RowKey"])

    async def get(self, key: Mapping[str, Any]) -> Row | None:
        client = await self.tables.table(self.table_name)
        try:
            return self._row(await client.get_entity(*self._pk_rk(key)))
        except ResourceNotFoundError:
            return None

    async def create(self, values: Mapping[str, Any]) -> Row:
        client = await self.tables.table(self.table_name)
        try:
            await client.create_entity(self._entity(values))
        except ResourceExistsError:
            raise SourceError(409, f"{self.table.entity_set} has a row with this key already") from None
        created = await self.get({k: values[k] for k in self.key_names})
        assert created is not None
        return created

    async def update(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
        client = await self.tables.table(self.table_name)
        pk, rk = self._pk_rk(key)
        entity = {"PartitionKey": pk, "RowKey": rk, **self._entity(values)}
        nulls = [self.names[n] for n, v in values.items() if v is None]
        try:
            if nulls:  # Table Storage has no null: a property set to null is removed (a full replace)
                current = await client.get_entity(pk, rk)
                merged = {k: v for k, v in current.items() if k not in nulls}
                merged.update(entity)
                await client.update_entity(merged, mode=UpdateMode.REPLACE)
            else:
                await client.update_entity(entity, mode=UpdateMode.MERGE)
        except ResourceNotFoundError:
            return False
        return True

    async def delete(self, key: Mapping[str, Any]) -> bool:
        if await self.get(key) is None:
            return False
        client = await self.tables.table(self.table_name)
        await client.delete_entity(*self._pk_rk(key))
        return True
