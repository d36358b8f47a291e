"""Holds: records whose changes wait behind a change being retried.

When a record's change fails for a transient reason, apply sends it again as a scheduled message
(same session) and holds the record: its later changes, arriving before the retry is due, are sent
after it instead of overtaking it. The hold names the retry message (`head`); it is released once
that message is applied or given up.

Table `holds`: PartitionKey = the session id, RowKey = the record's lane (`<map>|<order key>`), so
one query per batch reads every hold of its session.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from core.maps.keys import encode_key
from core.store.tables import Tables


@dataclass(frozen=True)
class Hold:
    lane: str
    head: str  # message id of the retry the lane waits for
    until: datetime  # when that retry is due


def _row_key(lane: str) -> str:
    # Lanes are built from escaped keys already; escaping again keeps any map name Table-safe.
    return encode_key([lane])


class HoldStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def holds(self, session_id: str) -> dict[str, Hold]:
        table = await self.tables.table("holds")
        found: dict[str, Hold] = {}
        partition = session_id.replace("'", "''")
        async for row in table.query_entities(f"PartitionKey eq '{partition}'"):
            until = row["Until"]
            found[row["Lane"]] = Hold(row["Lane"], row["Head"], datetime.fromtimestamp(until.timestamp(), UTC))
        return found

    async def hold(self, session_id: str, hold: Hold) -> None:
        table = await self.tables.table("holds")
        await table.upsert_entity({"PartitionKey": session_id, "RowKey": _row_key(hold.lane), "Lane": hold.lane,
                                   "Head": hold.head, "Until": hold.until}, mode=UpdateMode.REPLACE)

    async def release(self, session_id: str, lane: str) -> None:
        table = await self.tables.table("holds")
        with contextlib.suppress(ResourceNotFoundError):
            await table.delete_entity(session_id, _row_key(lane))
