"""Links: one row per synced record per map, the state machine of that record.

A link ties the canonical record key (core.maps.record_key) to both sides' identities and keeps,
per side, the last values we know (wire form), their stable hash (echo and no-op detection) and the
last applied source version (stale-event guard). Rows are etag-guarded: two writers of one record
cannot both win; the loser gets `LinkConflict` and re-reads.

Table `links`: PartitionKey = map, RowKey = encode_key(key).
Table `linkids`: PartitionKey = `<map>|dataverse`, RowKey = Dataverse row id (lower case) -> the key.
The index row is written before the link, so a crash between the two leaves an index row that
`find` ignores (it checks the link points back), never a link that cannot be found.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from core.events.model import wire_value
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
        "PartitionKey": link.map,
        "RowKey": encode_key(link.key),
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
        map=entity["PartitionKey"],
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


class LinkStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    async def get(self, map: str, key: tuple[str, ...]) -> Link | None:
        table = await self.tables.table("links")
        try:
            return _from_entity(await table.get_entity(map, encode_key(key)))
        except ResourceNotFoundError:
            return None

    async def find(self, map: str, side: str, record_id: str) -> Link | None:
        """The link of a Dataverse row id (F&O records are found by key: `get`)."""
        if side != "dataverse":
            raise ValueError(f"side {side!r}: only Dataverse row ids are indexed; find F&O records by key")
        index = await self.tables.table("linkids")
        row_id = record_id.lower()
        try:
            row = await index.get_entity(f"{map}|dataverse", row_id)
        except ResourceNotFoundError:
            return None
        link = await self.get(map, decode_key(row["Key"]))
        # A stale index row (the link moved to another id, or its save never happened) finds nothing.
        return link if link is not None and (link.dataverse_id or "").lower() == row_id else None

    async def save(self, link: Link) -> Link:
        """Insert (etag None) or etag-guarded update; the saved link with its new etag."""
        saved = replace(link, updated_at=datetime.now(UTC))
        entity = _to_entity(saved)
        if saved.dataverse_id:
            index = await self.tables.table("linkids")
            await index.upsert_entity(
                {"PartitionKey": f"{saved.map}|dataverse", "RowKey": saved.dataverse_id.lower(),
                 "Key": encode_key(saved.key)}, mode=UpdateMode.REPLACE)
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
                link.map, row_key, etag=link.etag,
                match_condition=MatchConditions.IfNotModified if link.etag else MatchConditions.Unconditionally)
        except ResourceModifiedError:
            raise LinkConflict(f"link {link.map}/{row_key} changed since it was read") from None
        if link.dataverse_id:
            index = await self.tables.table("linkids")
            partition, row_id = f"{link.map}|dataverse", link.dataverse_id.lower()
            try:
                row = await index.get_entity(partition, row_id)
            except ResourceNotFoundError:
                return
            # The id may since belong to another link (or be rewritten right now): leave that row alone.
            if row["Key"] == row_key:
                with contextlib.suppress(ResourceModifiedError):
                    await index.delete_entity(partition, row_id, etag=row.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified)
