"""Sweep checkpoints in Table Storage (table `sweeps`): per source, up to when it has been swept.

One row per source (`dataverse-jobs`, `dataverse-changes|<table>`, `fno|<entity set>`): `Token`, the last
change-tracking delta link (Dataverse change tracking); `Since`, the newest change time seen there (the
source's own clock: a System Job's `completedon`, a row's `ModifiedDateTime`), and `Seen`, the ids already
sent whose time is within the overlap before `Since` (JSON), so the overlap read again is not sent twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from core.store.tables import Tables
from core.sync.sweep import Checkpoint

TABLE = "sweeps"
PARTITION = "sweep"


class SweepStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def get(self, source: str) -> Checkpoint | None:
        table = await self.tables.table(TABLE)
        try:
            entity = await table.get_entity(PARTITION, _row_key(source))
        except ResourceNotFoundError:
            return None
        since = entity["Since"]
        return Checkpoint(since=datetime.fromtimestamp(since.timestamp(), UTC),
                          seen=dict(json.loads(entity.get("Seen") or "{}")), token=entity.get("Token") or None)

    async def put(self, source: str, checkpoint: Checkpoint) -> None:
        table = await self.tables.table(TABLE)
        await table.upsert_entity({
            "PartitionKey": PARTITION, "RowKey": _row_key(source), "Source": source,
            "Since": checkpoint.since.astimezone(UTC), "Seen": json.dumps(checkpoint.seen),
            "Token": checkpoint.token or "", "SweptAt": datetime.now(UTC)}, mode=UpdateMode.REPLACE)


def _row_key(source: str) -> str:
    # RowKey may not hold / \ # ? (an entity set never does; a map of the future might)
    return "".join("_" if c in "/\\#?" or ord(c) < 0x20 else c for c in source)
