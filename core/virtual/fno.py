"""F&O data entities as a virtual table source, live through the F&O connector (core.connectors.fno): filters,
order and paging become the entity's OData query, cross-company, so every legal entity's rows (dataAreaId in the
key) are served. contains/startswith/endswith become F&O's wildcard `eq '*text*'` (case-insensitive, like the
service's own text functions); a needle holding `*` cannot be written so and is finished here on a bounded set
(core.virtual.service)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.connectors.errors import ConnectorError, NotFound, ValidationFailed
from core.connectors.fno import FnoClient
from core.virtual.filter import And, Call, Compare, Const, Node, Not, Or, walk
from core.virtual.model import DerivedKey, FnoSource, VirtualTable
from core.virtual.source import Order, Row, SourceError, VirtualSource
from core.virtual.values import from_json


def odata_literal(value: Any) -> str:
    """A typed value as an OData URL literal; a quote inside a string is doubled, so a value stays one literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float | uuid.UUID):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class FnoEntitySource(VirtualSource):
    def __init__(self, table: VirtualTable, source: FnoSource, client: FnoClient) -> None:
        self.table = table
        self.entity_set = source.entity_set
        self.cross_company = source.cross_company
        self.client = client
        self.names = {c.name: c.source_name for c in table.columns}
        self.key_names = table.key.columns if isinstance(table.key, DerivedKey) else [table.key.column]

    def pushable(self, node: Node) -> bool:
        # Text functions go as F&O's wildcard (`eq '*text*'`), which has no escape: a needle holding `*` stays here.
        return not any(isinstance(n, Const) or (isinstance(n, Call) and "*" in n.value) for n in walk(node))

    def orders(self, orderby: Order) -> bool:
        return True

    def expression(self, node: Node) -> str:
        match node:
            case And():
                return f"({self.expression(node.left)} and {self.expression(node.right)})"
            case Or():
                return f"({self.expression(node.left)} or {self.expression(node.right)})"
            case Not():
                return f"not ({self.expression(node.operand)})"
            case Compare():
                return f"{self.names[node.column]} {node.op} {odata_literal(node.value)}"
            case Call():
                pattern = {"contains": "*{}*", "startswith": "{}*", "endswith": "*{}"}[node.name].format(node.value)
                return f"{self.names[node.column]} eq {odata_literal(pattern)}"
        raise ValueError(f"F&O cannot run {node!r}")

    def _row(self, record: Mapping[str, Any]) -> Row:
        row: Row = {}
        for column in self.table.columns:
            value = record.get(column.source_name)
            try:
                row[column.name] = from_json(column.model_copy(update={"nullable": True}), value)
            except ValueError:
                row[column.name] = None if value is None else str(value)
        return row

    def _key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        return {self.names[name]: value for name, value in key.items()}

    def _body(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {self.names[name]: value for name, value in values.items()}

    async def rows(self, where: Node | None, orderby: Order, offset: int, limit: int | None) -> list[Row]:
        order = ",".join(f"{self.names[n]} {'desc' if d else 'asc'}" for n, d in orderby) or None
        select = [c.source_name for c in self.table.columns]
        try:
            if limit is None:
                records = await self.client.query(
                    self.entity_set,
                    filter=self._filter(where),
                    select=select,
                    orderby=order,
                    cross_company=self.cross_company,
                )
            else:
                records = await self._page(where, select, order, offset, limit)
        except ConnectorError as error:
            raise SourceError(502, f"F&O failed reading {self.entity_set}: {error}") from error
        return [self._row(r) for r in records]

    async def _page(
        self, where: Node | None, select: list[str], order: str | None, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        from core.connectors.paging import read_page

        options: dict[str, str] = {"$select": ",".join(select), "$top": str(limit)}
        if where is not None:
            options["$filter"] = self._filter(where) or ""
        if order:
            options["$orderby"] = order
        if offset:
            options["$skip"] = str(offset)
        if self.cross_company:
            options["cross-company"] = "true"
        page = await read_page(
            self.client.http, self.entity_set, options, None, {"Prefer": f"odata.maxpagesize={limit}"}
        )
        return list(page.rows)

    def _filter(self, where: Node | None) -> str | None:
        return None if where is None else self.expression(where)

    async def count(self, where: Node | None) -> int:
        options: dict[str, str] = {"$top": "0", "$count": "true"}
        if where is not None:
            options["$filter"] = self.expression(where)
        if self.cross_company:
            options["cross-company"] = "true"
        try:
            response = await self.client.http.request("GET", self.entity_set, params=options)
        except ConnectorError as error:
            raise SourceError(502, f"F&O failed counting {self.entity_set}: {error}") from error
        from core.connectors import jsonwire

        return int(jsonwire.loads(response.content)["@odata.count"])

    async def get(self, key: Mapping[str, Any]) -> Row | None:
        try:
            record = await self.client.get(
                self.entity_set, self._key(key), select=[c.source_name for c in self.table.columns]
            )
        except ConnectorError as error:
            raise SourceError(502, f"F&O failed reading {self.entity_set}: {error}") from error
        return None if record is None else self._row(record)

    async def create(self, values: Mapping[str, Any]) -> Row:
        try:
            await self.client.create(self.entity_set, self._body(values))
        except ValidationFailed as error:
            raise SourceError(409, f"F&O refused the new {self.entity_set} record: {error}") from error
        except ConnectorError as error:
            raise SourceError(502, f"F&O failed creating a {self.entity_set} record: {error}") from error
        created = await self.get({name: values[name] for name in self.key_names})
        if created is None:
            raise SourceError(502, f"F&O created a {self.entity_set} record it then could not find")
        return created

    async def update(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
        try:
            if not values:
                return await self.get(key) is not None
            await self.client.update(self.entity_set, self._key(key), self._body(values))
        except NotFound:
            return False
        except ValidationFailed as error:
            raise SourceError(409, f"F&O refused the change of {self.entity_set}: {error}") from error
        except ConnectorError as error:
            raise SourceError(502, f"F&O failed updating {self.entity_set}: {error}") from error
        return True

    async def delete(self, key: Mapping[str, Any]) -> bool:
        try:
            return await self.client.delete(self.entity_set, self._key(key))
        except ConnectorError as error:
            raise SourceError(502, f"F&O failed deleting from {self.entity_set}: {error}") from error
