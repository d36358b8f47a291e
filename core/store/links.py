"""Links: one row per synced record per map, the state machine of that record.

A link ties the canonical record key (core.maps.record_key) to both sides' identities and keeps,
per side, the last values we know (wire form), their stable hash (echo and no-op detection) and the
last applied source version (stale-event guard). Rows are etag-guarded: two writers of one record
cannot both win; the loser gets `LinkConflict` and re-reads.

Table `links`: PartitionKey = `<map>|p<nn>` (a stable hash of the key, LINK_PARTITIONS per map), RowKey =
encode_key(key). Table `linkids`: PartitionKey = `<map>|dataverse|<first two hex digits of the row id>`,
RowKey = Dataverse row id (lower case) -> the key. Partitions stay small: Table Storage serves a partition
at about 2,000 entities/s (a map's initial sync writes faster than that), and Azurite's batch writes slow
down with the size of the partition (an upsert transaction: 1,660 rows/s into an empty one, 180 at 40,000).
The index row is written before the link, so a crash between the two leaves an index row that
`find` ignores (it checks the link points back), never a link that cannot be found.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from core.events.model import wire_value
from core.gather import Gather
from core.maps.keys import decode_key, encode_key
from core.store.tables import Tables
from core.sync.domain import Link, LinkConflict, LinkTooLarge
from core.sync.domain import LinkState as LinkState  # re-exported: the old import path

# Table Storage: a string property holds at most 64 KiB of UTF-16.
MAX_PROPERTY_BYTES = 64 * 1024


def _json_property(link: Link, name: str, value: Any) -> str:
    try:
        # Wire form (Decimal -> full-precision text, datetime -> ISO UTC); values already in it pass unchanged.
        text = json.dumps(wire_value(value), separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"link {link.map}/{encode_key(link.key)}: {name}: {exc}") from None
    size = len(text.encode("utf-16-le"))
    if size > MAX_PROPERTY_BYTES:
        raise LinkTooLarge(
            f"link {link.map}/{encode_key(link.key)}: {name} takes {size} bytes, over Table Storage's "
            f"{MAX_PROPERTY_BYTES}-byte property limit (map fewer or shorter fields)"
        )
    return text


def _to_entity(link: Link) -> dict[str, Any]:
    return {
        "PartitionKey": link_partition(link.map, encode_key(link.key)),
        "RowKey": encode_key(link.key),
        "Map": link.map,
        "DataverseId": link.dataverse_id or "",
        "FnoKey": _json_property(link, "fno_key", link.fno_key),
        "Values": _json_property(link, "values", link.values),
        "Versions": _json_property(link, "versions", link.versions),
        "Hashes": _json_property(link, "hashes", link.hashes),
        "State": link.state,
        "UpdatedAt": link.updated_at,
    }


def _from_entity(entity: Any) -> Link:
    updated = entity.get("UpdatedAt")
    return Link(
        map=entity.get("Map") or entity["PartitionKey"].rsplit("|", 1)[0],
        key=decode_key(entity["RowKey"]),
        dataverse_id=entity.get("DataverseId") or None,
        fno_key=json.loads(entity.get("FnoKey") or "null"),
        values=json.loads(entity.get("Values") or "{}"),
        versions=json.loads(entity.get("Versions") or "{}"),
        hashes=json.loads(entity.get("Hashes") or "{}"),
        state=entity.get("State", "linked"),
        updated_at=None if updated is None else datetime.fromtimestamp(updated.timestamp(), UTC),
        etag=entity.metadata["etag"],
    )


LINK_PARTITIONS = 64


def link_partition(map: str, row_key: str) -> str:
    digest = hashlib.sha256(row_key.encode()).digest()
    return f"{map}|p{int.from_bytes(digest[:4], 'big') % LINK_PARTITIONS:02d}"


def index_partition(map: str, row_id: str) -> str:
    return f"{map}|dataverse|{row_id[:2]}"


# Table Storage allows at most 100 operations in one transaction.
_TRANSACTION = 100
_INDEXED_CACHE = 100_000


def _operation(link: Link, entity: dict[str, Any]) -> Any:
    """The transaction operation saving `link`: insert when new, else replace guarded by its etag."""
    if link.etag is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": link.etag,
                               "match_condition": MatchConditions.IfNotModified})


class LinkStore:
    """Links in Table Storage. With `gather=True` (the apply engine), saves made at about the same time by
    records applied side by side are gathered (core.store.gather) into one transaction per partition."""

    def __init__(self, tables: Tables, *, gather: bool = False, window: float = 0.003) -> None:
        self.tables = tables
        self._saves: Gather[Link, Link] | None = Gather(self._save_many, window=window) if gather else None
        # Index rows known to be in place ((map, row id) -> key): a save of an unchanged id writes none.
        self._indexed: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def get(self, map: str, key: tuple[str, ...]) -> Link | None:
        row_key = encode_key(key)
        entity = await self._entity("links", link_partition(map, row_key), row_key)
        return _from_entity(entity) if entity is not None else None

    async def find(self, map: str, side: str, record_id: str) -> Link | None:
        """The link of a Dataverse row id (F&O records are found by key: `get`)."""
        if side != "dataverse":
            raise ValueError(f"side {side!r}: only Dataverse row ids are indexed; find F&O records by key")
        row_id = record_id.lower()
        row = await self._entity("linkids", index_partition(map, row_id), row_id)
        if row is None:
            return None
        self._remember_index(map, row_id, row["Key"])
        link = await self.get(map, decode_key(row["Key"]))
        # A stale index row (the link moved to another id, or its save never happened) finds nothing.
        return link if link is not None and (link.dataverse_id or "").lower() == row_id else None

    async def _entity(self, table_name: str, partition: str, row_key: str) -> Any:
        # A point read each, even when many records read at once: a query for several row keys (an `or`
        # filter) scans the whole partition, in Azure as in Azurite, and a map's partition holds every link.
        table = await self.tables.table(table_name)
        try:
            return await table.get_entity(partition, row_key)
        except ResourceNotFoundError:
            return None

    def _remember_index(self, map: str, row_id: str, key_text: str) -> None:
        self._indexed[(map, row_id)] = key_text
        self._indexed.move_to_end((map, row_id))
        while len(self._indexed) > _INDEXED_CACHE:
            self._indexed.popitem(last=False)

    def _index_row(self, link: Link) -> dict[str, Any] | None:
        """The index row the link needs written, or None when it is in place already."""
        if not link.dataverse_id:
            return None
        row_id, key_text = link.dataverse_id.lower(), encode_key(link.key)
        if self._indexed.get((link.map, row_id)) == key_text:
            return None
        return {"PartitionKey": index_partition(link.map, row_id), "RowKey": row_id, "Key": key_text, "Map": link.map}

    async def save(self, link: Link) -> Link:
        """Insert (etag None) or etag-guarded update; the saved link with its new etag."""
        if self._saves is not None:
            return await self._saves.submit(link)
        return await self._save_one(link)

    async def _save_one(self, link: Link) -> Link:
        saved = replace(link, updated_at=datetime.now(UTC))
        entity = _to_entity(saved)
        index_row = self._index_row(saved)
        if index_row is not None:
            index = await self.tables.table("linkids")
            await index.upsert_entity(index_row, mode=UpdateMode.REPLACE)
            self._remember_index(saved.map, index_row["RowKey"], index_row["Key"])
        table = await self.tables.table("links")
        try:
            if saved.etag is None:
                meta = await table.create_entity(entity)
            else:
                meta = await table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=saved.etag, match_condition=MatchConditions.IfNotModified)
        except ResourceExistsError:
            raise LinkConflict(f"link {saved.map}/{entity['RowKey']} already exists") from None
        except (ResourceModifiedError, ResourceNotFoundError):
            raise LinkConflict(f"link {saved.map}/{entity['RowKey']} changed or vanished since it was read") from None
        saved.etag = meta["etag"]
        return saved

    async def _save_many(self, links: list[Link]) -> list[Link | BaseException]:
        """Index rows first (one transaction per partition), then the links (one per partition); a
        transaction refused as a whole (a conflict in it) is done link by link, so each gets its answer."""
        results: list[Link | BaseException | None] = [None] * len(links)
        ready: dict[int, tuple[Link, dict[str, Any]]] = {}  # position -> (the link to save, its entity)
        for position, link in enumerate(links):
            saved = replace(link, updated_at=datetime.now(UTC))
            try:
                ready[position] = (saved, _to_entity(saved))  # a too-large link fails alone, before any write
            except Exception as error:
                results[position] = error
        await self._write_index_rows([saved for saved, _ in ready.values()])
        by_partition: dict[str, list[int]] = defaultdict(list)
        for position, (_, entity) in ready.items():
            by_partition[entity["PartitionKey"]].append(position)
        table = await self.tables.table("links")
        for positions in by_partition.values():
            for start in range(0, len(positions), _TRANSACTION):
                group = positions[start:start + _TRANSACTION]
                if len(group) > 1 and len({ready[p][1]["RowKey"] for p in group}) == len(group):
                    try:
                        metas = await table.submit_transaction([_operation(*ready[p]) for p in group])
                    except TableTransactionError:
                        pass  # some link changed since it was read: find which, one by one
                    else:
                        for p, meta in zip(group, metas, strict=True):
                            saved = ready[p][0]
                            saved.etag = meta["etag"]
                            results[p] = saved
                        continue
                for p in group:
                    try:
                        results[p] = await self._save_one(links[p])
                    except Exception as error:
                        results[p] = error
        return [r if r is not None else RuntimeError("link not saved") for r in results]

    async def put_many(self, links: Sequence[Link]) -> None:
        """Write links as they are, unguarded (insert or replace), one transaction per 100 of a map: an
        initial-sync or repair page, which compared both sides just now, states what each record is."""
        entities: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        stamped = [replace(link, updated_at=datetime.now(UTC)) for link in links]
        for saved in stamped:
            entity = _to_entity(saved)
            entities[entity["PartitionKey"]][entity["RowKey"]] = entity  # the last one of a record wins
        await self._write_index_rows(stamped)
        table = await self.tables.table("links")
        for rows in entities.values():
            pending = list(rows.values())
            for start in range(0, len(pending), _TRANSACTION):
                await table.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE})
                                                for row in pending[start:start + _TRANSACTION]])

    async def _write_index_rows(self, links: list[Link]) -> None:
        """The index rows these links need (written before the links), one transaction per partition."""
        rows: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for link in links:
            row = self._index_row(link)
            if row is not None:
                rows[row["PartitionKey"]][row["RowKey"]] = row
        if not rows:
            return
        index = await self.tables.table("linkids")
        for map_rows in rows.values():
            pending = list(map_rows.values())
            for start in range(0, len(pending), _TRANSACTION):
                chunk = pending[start:start + _TRANSACTION]
                await index.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE}) for row in chunk])
                for row in chunk:
                    self._remember_index(row["Map"], row["RowKey"], row["Key"])

    async def delete(self, link: Link) -> None:
        """Remove the link (etag-guarded when it has one) and its index row."""
        table = await self.tables.table("links")
        row_key = encode_key(link.key)
        if link.etag is not None:
            # The SDK ignores a missing row on delete; check first so a vanished link is a conflict too.
            current = await self.get(link.map, link.key)
            if current is None or current.etag != link.etag:
                raise LinkConflict(f"link {link.map}/{row_key} changed or vanished since it was read")
        try:
            await table.delete_entity(
                link_partition(link.map, row_key), row_key, etag=link.etag,
                match_condition=MatchConditions.IfNotModified if link.etag else MatchConditions.Unconditionally)
        except ResourceModifiedError:
            raise LinkConflict(f"link {link.map}/{row_key} changed since it was read") from None
        if link.dataverse_id:
            self._indexed.pop((link.map, link.dataverse_id.lower()), None)
            index = await self.tables.table("linkids")
            row_id = link.dataverse_id.lower()
            partition = index_partition(link.map, row_id)
            try:
                row = await index.get_entity(partition, row_id)
            except ResourceNotFoundError:
                return
            # The id may since belong to another link (or be rewritten right now): leave that row alone.
            if row["Key"] == row_key:
                with contextlib.suppress(ResourceModifiedError):
                    await index.delete_entity(partition, row_id, etag=row.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified)
