"""Row ids: Dataverse's OData v4 Data Provider keys every virtual table on an Edm.Guid.

A source with a GUID column serves it as is. Any other key (a string, a number, F&O's composite dataAreaId + id)
gets a UUIDv5 of its values (stable: the same row always has the same id) and a reverse index GUID -> key, written
when the service hands the id out (a page read, a create), so a GUID that Dataverse sends back finds its row.
Dataverse only ever sends ids it was given, so remembering what was served is complete; the index lives in Table
Storage, shared by every instance of the app."""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from core.virtual.model import DerivedKey, GuidColumnKey, VirtualTable
from core.virtual.values import from_json, key_text

Key = dict[str, Any]  # source key: OData column name -> typed value


def key_of(table: VirtualTable, row: Mapping[str, Any]) -> Key:
    names = [table.key.column] if isinstance(table.key, GuidColumnKey) else table.key.columns
    return {name: row.get(name) for name in names}


def derived_id(key: DerivedKey, values: Mapping[str, Any]) -> uuid.UUID:
    # A JSON array of the key's texts: unambiguous for composite keys (no separator a value could contain).
    name = json.dumps([key_text(values[c]) for c in key.columns], ensure_ascii=False, separators=(",", ":"))
    return uuid.uuid5(key.namespace, name)


def id_of(table: VirtualTable, row: Mapping[str, Any]) -> uuid.UUID:
    if isinstance(table.key, GuidColumnKey):
        value = row[table.key.column]
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    return derived_id(table.key, row)


def key_to_json(key: Key) -> str:
    return json.dumps({k: key_text(v) if v is not None else None for k, v in key.items()}, ensure_ascii=False)


def key_from_json(table: VirtualTable, text: str) -> Key:
    stored = json.loads(text)
    key: Key = {}
    for name, value in stored.items():
        column = table.column(name)
        assert column is not None, f"{table.entity_set}: stored key names {name}, no column any more"
        key[name] = typed_key(column.type, value)
    return key


def typed_key(edm: str, value: Any) -> Any:
    """A key value back from its text (key_text)."""
    if value is None:
        return None
    if edm in ("Edm.Int32", "Edm.Int64"):
        return int(value)
    if edm == "Edm.Boolean":
        return value == "true"
    from core.virtual.model import Column

    return from_json(Column(name="k", type=edm), value)  # type: ignore[arg-type]


class KeyIndex(ABC):
    """GUID -> source key of derived-id tables."""

    @abstractmethod
    async def remember(self, table: VirtualTable, pairs: Sequence[tuple[uuid.UUID, Key]]) -> None: ...

    @abstractmethod
    async def find(self, table: VirtualTable, row_id: uuid.UUID) -> Key | None: ...

    async def aclose(self) -> None:  # noqa: B027 - an index in memory holds nothing to close
        pass


class MemoryKeyIndex(KeyIndex):
    """For unit tests of the service and one-process tools."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, uuid.UUID], str] = {}

    async def remember(self, table: VirtualTable, pairs: Sequence[tuple[uuid.UUID, Key]]) -> None:
        for row_id, key in pairs:
            self.keys[(table.entity_set, row_id)] = key_to_json(key)

    async def find(self, table: VirtualTable, row_id: uuid.UUID) -> Key | None:
        text = self.keys.get((table.entity_set, row_id))
        return None if text is None else key_from_json(table, text)


class RecentIds:
    """The ids this process wrote to the index lately, so paging the same rows again writes nothing."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, uuid.UUID], None] = OrderedDict()

    def new(self, table: str, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        return [i for i in ids if (table, i) not in self._seen]

    def add(self, table: str, ids: Sequence[uuid.UUID]) -> None:
        for row_id in ids:
            self._seen[(table, row_id)] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
