"""The reverse index of derived ids in Table Storage (table `vtkeys`): PartitionKey = entity set, RowKey = the GUID,
`Key` = the source key as JSON. Shared by every instance of the app, so any of them finds a GUID another served."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from azure.core.exceptions import ResourceNotFoundError

from core.store.tables import Tables
from core.virtual.keys import Key, KeyIndex, key_from_json, key_to_json
from core.virtual.model import VirtualTable

TABLE = "vtkeys"
_BATCH = 100  # most operations of one Table Storage transaction (all in one partition: the entity set)


class TableKeyIndex(KeyIndex):
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def aclose(self) -> None:
        await self.tables.close()

    async def remember(self, table: VirtualTable, pairs: Sequence[tuple[uuid.UUID, Key]]) -> None:
        client = await self.tables.table(TABLE)
        operations = [
            ("upsert", {"PartitionKey": table.entity_set, "RowKey": str(row_id), "Key": key_to_json(key)})
            for row_id, key in pairs
        ]
        for start in range(0, len(operations), _BATCH):
            await client.submit_transaction(operations[start : start + _BATCH])

    async def find(self, table: VirtualTable, row_id: uuid.UUID) -> Key | None:
        client = await self.tables.table(TABLE)
        try:
            entity = await client.get_entity(table.entity_set, str(row_id))
        except ResourceNotFoundError:
            return None
        return key_from_json(table, str(entity["Key"]))
