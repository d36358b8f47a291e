"""Change notifications over fakes of core's own ports: created or updated, told in change order, each once, and a
refusal stops the poll with the checkpoint at the last change told."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.connectors.errors import PermanentError
from core.virtual.filter import Node, matches
from core.virtual.keys import MemoryKeyIndex
from core.virtual.model import VirtualTable
from core.virtual.notify import Checkpoint, Checkpoints, DataverseEvents, DataverseTable, tell_all
from core.virtual.service import KeyCheck, VirtualService
from core.virtual.source import Order, Row, VirtualSource

T0 = datetime(2026, 6, 1, tzinfo=UTC)
DEFINITION = json.loads((Path(__file__).resolve().parents[3] / "virtualtables" / "products.json").read_text())
DEFINITION["columns"].append({"name": "CreatedOn", "type": "Edm.DateTimeOffset"})
DEFINITION["notify"] = {"changed_column": "ModifiedOn", "created_column": "CreatedOn", "batch": 3}
TABLE = VirtualTable.model_validate(DEFINITION)


class Rows(VirtualSource):
    def __init__(self) -> None:
        self.data: list[Row] = []

    def add(self, name: str, created: datetime, modified: datetime) -> Row:
        row = {"ProductId": uuid.uuid4(), "Name": name, "CreatedOn": created, "ModifiedOn": modified}
        self.data.append(row)
        return row

    def pushable(self, node: Node) -> bool:
        return True

    def orders(self, orderby: Order) -> bool:
        return True

    async def rows(self, where: Node | None, orderby: Order, offset: int, limit: int | None) -> list[Row]:
        found = [r for r in self.data if where is None or matches(where, r)]
        for name, descending in reversed(list(orderby)):
            found.sort(key=lambda r: r[name], reverse=descending)
        return found[offset : None if limit is None else offset + limit]

    async def count(self, where: Node | None) -> int:
        return len(await self.rows(where, [], 0, None))

    async def get(self, key: Mapping[str, Any]) -> Row | None:
        raise NotImplementedError

    async def create(self, values: Mapping[str, Any]) -> Row:
        raise NotImplementedError

    async def update(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    async def delete(self, key: Mapping[str, Any]) -> bool:
        raise NotImplementedError


class Events(DataverseEvents):
    def __init__(self) -> None:
        self.told: list[tuple[str, str, str]] = []
        self.refuse: str | None = None

    async def table_of(self, entity_set: str) -> DataverseTable | None:
        return DataverseTable("dwvt_product", "dwvt_productid", {"Name": "dwvt_name", "ProductId": "dwvt_productid"})

    async def tell(self, action: str, target: Mapping[str, Any]) -> None:
        if target["dwvt_name"] == self.refuse:
            raise PermanentError("refused for the test")
        assert target["@odata.type"] == "Microsoft.Dynamics.CRM.dwvt_product"
        self.told.append((action, target["dwvt_productid"], target["dwvt_name"]))


class Memory(Checkpoints):
    def __init__(self) -> None:
        self.saved: dict[str, Checkpoint] = {}

    async def get(self, entity_set: str) -> Checkpoint | None:
        found = self.saved.get(entity_set)
        return None if found is None else Checkpoint(found.changed, set(found.ids))

    async def put(self, entity_set: str, checkpoint: Checkpoint) -> None:
        self.saved[entity_set] = Checkpoint(checkpoint.changed, set(checkpoint.ids))


def test_created_and_updated_told_in_order_each_once() -> None:
    rows, events, checkpoints = Rows(), Events(), Memory()
    old = rows.add("old", T0, T0)
    service = VirtualService([TABLE], lambda t: rows, MemoryKeyIndex(), KeyCheck("k"))

    def poll() -> Any:
        return asyncio.run(tell_all(service, events, checkpoints))[0]

    first = poll()
    assert (first.created, first.updated, events.told) == (0, 0, [])  # only the checkpoint
    assert checkpoints.saved["Products"].ids == {str(old["ProductId"])}
    old["ModifiedOn"] = T0 + timedelta(minutes=5)
    same_second = rows.add("new at the old row's time", T0 + timedelta(minutes=5), T0 + timedelta(minutes=5))
    later = rows.add("later", T0 + timedelta(minutes=6), T0 + timedelta(minutes=6))
    second = poll()
    assert (second.created, second.updated) == (2, 1)
    assert [(a, n) for a, _, n in events.told] == [
        ("OnExternalUpdated", "old"),
        ("OnExternalCreated", "new at the old row's time"),
        ("OnExternalCreated", "later"),
    ] or [(a, n) for a, _, n in events.told] == [
        ("OnExternalCreated", "new at the old row's time"),
        ("OnExternalUpdated", "old"),
        ("OnExternalCreated", "later"),
    ]
    assert poll().updated == 0 and len(events.told) == 3
    later["ModifiedOn"] = T0 + timedelta(minutes=6)  # unchanged value: not told again
    assert poll().updated == 0
    assert {i for _, i, _ in events.told} == {str(r["ProductId"]) for r in (old, same_second, later)}


def test_batches_and_a_refusal_keep_the_checkpoint_at_the_last_told() -> None:
    rows, events, checkpoints = Rows(), Events(), Memory()
    service = VirtualService([TABLE], lambda t: rows, MemoryKeyIndex(), KeyCheck("k"))
    asyncio.run(tell_all(service, events, checkpoints))  # empty source: checkpoint now
    start = checkpoints.saved["Products"].changed
    for i in range(5):
        rows.add(f"r{i}", start - timedelta(days=1), start + timedelta(minutes=i + 1))
    events.refuse = "r4"
    first = asyncio.run(tell_all(service, events, checkpoints))[0]
    assert first.updated == 3 and first.problem is None  # batch of 3
    second = asyncio.run(tell_all(service, events, checkpoints))[0]
    assert second.updated == 1 and "refused" in (second.problem or "")
    events.refuse = None
    third = asyncio.run(tell_all(service, events, checkpoints))[0]
    assert third.updated == 1 and third.problem is None
    assert [n for _, _, n in events.told] == ["r0", "r1", "r2", "r3", "r4"]
