"""External change notifications: rows changed at the source (found by polling a definition's change column) are
told to Dataverse with the OnExternalCreated / OnExternalUpdated / OnExternalDeleted actions of their virtual table,
so its flows and asynchronous plug-ins run as they would for a change made in Dataverse.

Per table a checkpoint in Table Storage (`vtnotify`) holds the newest change value told and the ids told at exactly
that value (several rows can share one timestamp). The first poll only sets the checkpoint to the newest change
there is: what changed before the notifications were turned on is not told. A row deleted outright cannot be found by
polling, so OnExternalDeleted is told for soft deletes only (a change that sets the definition's `deleted_column`); a
row written late with a change value older than the checkpoint is missed.
Changes made through the service itself are told too (Dataverse then sees its own update again as external)."""

from __future__ import annotations

import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from core.connectors.errors import ConnectorError
from core.store.tables import Tables
from core.virtual.filter import Compare, Node
from core.virtual.keys import id_of
from core.virtual.model import GuidColumnKey, VirtualTable
from core.virtual.service import VirtualService
from core.virtual.source import SourceError

log = logging.getLogger(__name__)
TABLE = "vtnotify"


@dataclass
class Checkpoint:
    changed: datetime
    ids: set[str] = field(default_factory=set)  # told at exactly `changed`


class Checkpoints(ABC):
    @abstractmethod
    async def get(self, entity_set: str) -> Checkpoint | None: ...

    @abstractmethod
    async def put(self, entity_set: str, checkpoint: Checkpoint) -> None: ...


class TableCheckpoints(Checkpoints):
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def get(self, entity_set: str) -> Checkpoint | None:
        client = await self.tables.table(TABLE)
        try:
            entity = await client.get_entity(entity_set, "checkpoint")
        except ResourceNotFoundError:
            return None
        changed = datetime.fromisoformat(str(entity["Changed"]))
        return Checkpoint(changed, set(json.loads(str(entity["Ids"]))))

    async def put(self, entity_set: str, checkpoint: Checkpoint) -> None:
        client = await self.tables.table(TABLE)
        await client.upsert_entity(
            {
                "PartitionKey": entity_set,
                "RowKey": "checkpoint",
                "Changed": checkpoint.changed.astimezone(UTC).isoformat(),
                "Ids": json.dumps(sorted(checkpoint.ids)),
            }
        )


@dataclass(frozen=True)
class DataverseTable:
    """A virtual table as Dataverse knows it: logical name, primary id attribute, and column (external name) ->
    attribute logical name."""

    logical_name: str
    primary_id: str
    attributes: Mapping[str, str]


class DataverseEvents(ABC):
    @abstractmethod
    async def table_of(self, entity_set: str) -> DataverseTable | None:
        """The Dataverse table whose external collection is `entity_set`, None when none is registered."""

    @abstractmethod
    async def tell(self, action: str, target: Mapping[str, Any]) -> None: ...


class WebApiEvents(DataverseEvents):
    """Through the Dataverse Web API (core.connectors: its retries, throttling, tokens)."""

    def __init__(self, http: Any) -> None:
        self.http = http  # core.connectors.http.ODataHttp of the environment's /api/data/v9.2/
        self._tables: dict[str, DataverseTable | None] = {}

    async def table_of(self, entity_set: str) -> DataverseTable | None:
        if entity_set not in self._tables:
            quoted = entity_set.replace("'", "''")
            found = (
                await self.http.request(
                    "GET",
                    "EntityDefinitions",
                    params={
                        "$select": "LogicalName,PrimaryIdAttribute,ExternalCollectionName",
                        "$filter": f"ExternalCollectionName eq '{quoted}'",
                    },
                )
            ).json()["value"]
            if not found:
                return None  # not cached: it may be registered later
            logical = str(found[0]["LogicalName"])
            attributes = (
                await self.http.request(
                    "GET",
                    f"EntityDefinitions(LogicalName='{logical}')/Attributes",
                    params={"$select": "LogicalName,ExternalName"},
                )
            ).json()["value"]
            self._tables[entity_set] = DataverseTable(
                logical,
                str(found[0]["PrimaryIdAttribute"]),
                {str(a["ExternalName"]): str(a["LogicalName"]) for a in attributes if a.get("ExternalName")},
            )
        return self._tables[entity_set]

    async def tell(self, action: str, target: Mapping[str, Any]) -> None:
        await self.http.request("POST", action, body={"Target": dict(target)})


@dataclass
class Told:
    entity_set: str
    created: int = 0
    updated: int = 0
    deleted: int = 0
    problem: str | None = None


def target_of(table: VirtualTable, dataverse: DataverseTable, row: Mapping[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = {
        "@odata.type": f"Microsoft.Dynamics.CRM.{dataverse.logical_name}",
        dataverse.primary_id: str(id_of(table, row)),
    }
    for column in table.columns:
        attribute = dataverse.attributes.get(column.name)
        if attribute is not None and attribute != dataverse.primary_id:
            value = row.get(column.name)
            target[attribute] = str(value) if isinstance(value, uuid.UUID) else value
    return target


async def tell_changes(
    service: VirtualService, table: VirtualTable, events: DataverseEvents, checkpoints: Checkpoints
) -> Told:
    """One poll of one table: the changes since its checkpoint (at most `notify.batch`), told in change order."""
    assert table.notify is not None
    told = Told(table.entity_set)
    notify, source = table.notify, service.source(table)
    changed = notify.changed_column
    assert changed is not None  # tell_all polls only tables with a change column
    key_names = [table.key.column] if isinstance(table.key, GuidColumnKey) else table.key.columns
    order = [(changed, False), *((n, False) for n in key_names)]
    checkpoint = await checkpoints.get(table.entity_set)
    since: Node | None = None if checkpoint is None else Compare("ge", changed, checkpoint.changed)
    if (since is not None and not source.pushable(since)) or not source.orders(order):
        told.problem = f"the source cannot order or filter by {changed}: notifications need a SQL or F&O source"
        return told
    if checkpoint is None:  # first poll: start from the newest change there is
        newest = await source.rows(Compare("ne", changed, None), [(changed, True)], 0, 1)
        start = newest[0][changed] if newest else datetime.now(UTC)
        same = await source.rows(Compare("eq", changed, start), [], 0, None) if newest else []
        await checkpoints.put(table.entity_set, Checkpoint(start, {str(id_of(table, r)) for r in same}))
        return told
    dataverse = await events.table_of(table.entity_set)
    if dataverse is None:
        told.problem = f"no Dataverse virtual table has the external collection name {table.entity_set}"
        return told
    rows = await source.rows(since, order, 0, notify.batch + len(checkpoint.ids))
    fresh = [r for r in rows if not (r[changed] == checkpoint.changed and str(id_of(table, r)) in checkpoint.ids)]
    start = Checkpoint(checkpoint.changed, set(checkpoint.ids))  # what was known when this poll began
    for row in fresh[: notify.batch]:
        made = None if notify.created_column is None else row.get(notify.created_column)
        created = made is not None and (
            made > start.changed or (made == start.changed and str(id_of(table, row)) not in start.ids)
        )
        deleted = notify.deleted_column is not None and row.get(notify.deleted_column) is True
        action = "OnExternalDeleted" if deleted else "OnExternalCreated" if created else "OnExternalUpdated"
        try:
            await events.tell(action, target_of(table, dataverse, row))
        except ConnectorError as error:
            told.problem = f"Dataverse refused {action} for {id_of(table, row)}: {error}"
            break
        if deleted:
            told.deleted += 1
        elif created:
            told.created += 1
        else:
            told.updated += 1
        if row[changed] != checkpoint.changed:
            checkpoint = Checkpoint(row[changed])
        checkpoint.ids.add(str(id_of(table, row)))
        await checkpoints.put(table.entity_set, checkpoint)  # after each: a failure later tells nothing twice
    return told


async def tell_all(service: VirtualService, events: DataverseEvents, checkpoints: Checkpoints) -> list[Told]:
    """One poll of every table whose definition asks for notifications; a table that fails does not stop the rest."""
    results: list[Told] = []
    for table in service.tables.values():
        if table.notify is None or table.notify.changed_column is None:  # told from F&O events (core.virtual.events)
            continue
        try:
            results.append(await tell_changes(service, table, events, checkpoints))
        except (SourceError, ConnectorError) as error:
            results.append(Told(table.entity_set, problem=str(error)))
    for result in results:
        if result.problem:
            log.warning("virtual table %s: changes not told to Dataverse: %s", result.entity_set, result.problem)
        elif result.created or result.updated or result.deleted:
            log.info(
                "virtual table %s: told Dataverse %d created, %d updated, %d deleted",
                result.entity_set,
                result.created,
                result.updated,
                result.deleted,
            )
    return results
