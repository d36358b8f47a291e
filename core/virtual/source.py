"""The one small port every virtual table source implements (SQL, F&O, Table Storage).

Rows cross it as dicts of OData property name -> typed Python value (Decimal, aware UTC datetime, UUID, ...); the
service adds the Edm.Guid id and does paging, counting and what the source cannot run itself."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from core.virtual.filter import Node

Row = dict[str, Any]
Order = Sequence[tuple[str, bool]]  # (property, descending)


class SourceError(Exception):
    """The source refused or failed a request; `status` is what the caller gets (409 duplicate, 502 failure)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class VirtualSource(ABC):
    @abstractmethod
    def pushable(self, node: Node) -> bool:
        """Whether the source runs this filter (sub)tree itself."""

    @abstractmethod
    def orders(self, orderby: Order) -> bool:
        """Whether the source returns rows in this order itself."""

    @abstractmethod
    async def rows(self, where: Node | None, orderby: Order, offset: int, limit: int | None) -> list[Row]:
        """Rows passing `where` (pushable by contract), in `orderby` order (when `orders` said so), from `offset`,
        at most `limit` (None: all: the service asks that only of a set it counted and found small)."""

    @abstractmethod
    async def count(self, where: Node | None) -> int: ...

    @abstractmethod
    async def get(self, key: Mapping[str, Any]) -> Row | None: ...

    @abstractmethod
    async def create(self, values: Mapping[str, Any]) -> Row:
        """Insert; the row as stored (defaults, a generated key)."""

    @abstractmethod
    async def update(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
        """False when no row has this key."""

    @abstractmethod
    async def delete(self, key: Mapping[str, Any]) -> bool:
        """False when no row has this key."""

    async def aclose(self) -> None:  # noqa: B027 - most sources hold nothing to close
        pass
