"""Initial-sync and reconciliation runs in Table Storage: the run, its page checkpoints, its row outcomes.

Table `syncruns`: PartitionKey = "run", RowKey = run id (ids sort by creation time).
Table `syncpages`: PartitionKey = encode_key((run, map, pass)), RowKey = page number (zero-padded): one
  checkpoint per page, so a map's progress is one partition read and a redelivered page is recognised.
Table `syncrows`: PartitionKey = encode_key((run, map)), RowKey = encode_key((outcome, record key)): the
  rows worth listing (missing on a side, differing, failed, a dry run's sample), never the whole table.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from core.events.model import wire_value
from core.maps.keys import decode_key, encode_key
from core.store.tables import Tables
from core.sync.runs import PageMark, Pass, RowNote, RowOutcome, Run, Tally

_RUN_PARTITION = "run"
_TRANSACTION = 100
_DETAIL_CHARS = 30_000  # a Table string property holds 32K characters


class RunChanged(Exception):
    """The run row changed since it was read (etag): re-read and try again."""


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def _run_entity(run: Run) -> dict[str, Any]:
    return {
        "PartitionKey": _RUN_PARTITION, "RowKey": run.id, "Kind": run.kind, "Maps": json.dumps(run.maps),
        "Sources": json.dumps(run.sources), "Deferred": json.dumps(run.deferred), "DryRun": run.dry_run,
        "RetryOf": run.retry_of or "", "Status": run.status, "Message": (run.message or "")[:_DETAIL_CHARS],
        "CreatedAt": run.created_at, "UpdatedAt": run.updated_at, "FinishedAt": run.finished_at,
        "RequestedBy": run.requested_by or "",
    }


def _utc(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value.timestamp(), UTC)


def _run(entity: Any) -> Run:
    return Run(
        id=entity["RowKey"], kind=entity["Kind"], maps=json.loads(entity["Maps"]),
        sources=json.loads(entity["Sources"]), deferred=json.loads(entity.get("Deferred") or "{}"),
        dry_run=bool(entity.get("DryRun")), retry_of=entity.get("RetryOf") or None, status=entity["Status"],
        message=entity.get("Message") or None, created_at=_utc(entity["CreatedAt"]) or datetime.now(UTC),
        updated_at=_utc(entity["UpdatedAt"]) or datetime.now(UTC), finished_at=_utc(entity.get("FinishedAt")),
        requested_by=entity.get("RequestedBy") or None, etag=entity.metadata["etag"])


class RunStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    # -- runs -------------------------------------------------------------------------------------
    async def create(self, run: Run) -> Run:
        table = await self.tables.table("syncruns")
        meta = await table.create_entity(_run_entity(run))
        run.etag = meta["etag"]
        return run

    async def save(self, run: Run) -> Run:
        """Save a run read earlier, guarded by its etag (RunChanged when someone else saved in between)."""
        table = await self.tables.table("syncruns")
        try:
            meta = await table.update_entity(_run_entity(run), mode=UpdateMode.REPLACE, etag=run.etag,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise RunChanged(run.id) from None
        run.etag = meta["etag"]
        return run

    async def get(self, run_id: str) -> Run | None:
        table = await self.tables.table("syncruns")
        try:
            return _run(await table.get_entity(_RUN_PARTITION, run_id))
        except ResourceNotFoundError:
            return None

    async def recent(self, limit: int = 50) -> list[Run]:
        table = await self.tables.table("syncruns")
        runs = [_run(e) async for e in table.query_entities("PartitionKey eq @p", parameters={"p": _RUN_PARTITION})]
        runs.sort(key=lambda r: r.id, reverse=True)
        return runs[:limit]

    # -- page checkpoints -----------------------------------------------------------------------------
    async def mark(self, run_id: str, map_name: str, pass_: Pass, mark: PageMark) -> None:
        table = await self.tables.table("syncpages")
        await table.upsert_entity({
            "PartitionKey": encode_key((run_id, map_name, pass_)), "RowKey": f"{mark.page:07d}",
            "State": mark.state, "Last": mark.last, "Tally": json.dumps(mark.tally.as_dict()),
            "At": datetime.now(UTC)}, mode=UpdateMode.REPLACE)

    async def marks(self, run_id: str, map_name: str, pass_: Pass) -> list[PageMark]:
        marks, _ = await self.marks_since(run_id, map_name, pass_)
        return marks

    async def marks_since(self, run_id: str, map_name: str, pass_: Pass) -> tuple[list[PageMark], datetime | None]:
        """The pass's checkpoints, and when its first page was read."""
        table = await self.tables.table("syncpages")
        marks: list[PageMark] = []
        first: datetime | None = None
        async for e in table.query_entities("PartitionKey eq @p",
                                            parameters={"p": encode_key((run_id, map_name, pass_))}):
            if not e["RowKey"].isdigit():
                continue  # a lease
            marks.append(PageMark(int(e["RowKey"]), e["State"], bool(e.get("Last")),
                                  Tally.from_dict(json.loads(e.get("Tally") or "{}"))))
            at = _utc(e.get("At"))
            if at is not None and (first is None or at < first):
                first = at
        return marks, first

    # -- page leases -----------------------------------------------------------------------------------
    async def claim(self, run_id: str, map_name: str, pass_: Pass, page: int, owner: str,
                    seconds: float) -> tuple[str | None, datetime]:
        """Lease a page to `owner` for `seconds`: (etag, until) when claimed, (None, until) while someone
        else holds it. A job delivered twice at once (a lock lost, a job sent again) works its page once."""
        table = await self.tables.table("syncpages")
        partition, row = encode_key((run_id, map_name, pass_)), f"{page:07d}-lease"
        now = datetime.now(UTC)
        until = now + timedelta(seconds=seconds)
        entity = {"PartitionKey": partition, "RowKey": row, "Owner": owner, "Until": until}
        try:
            meta = await table.create_entity(entity)
            return meta["etag"], until
        except ResourceExistsError:
            pass
        try:
            held = await table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None, now  # released just now: the caller tries again soon
        held_until = _utc(held.get("Until")) or now
        if held.get("Owner") != owner and held_until > now:
            return None, held_until
        try:
            meta = await table.update_entity(entity, mode=UpdateMode.REPLACE, etag=held.metadata["etag"],
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            return None, now + timedelta(seconds=1)
        return meta["etag"], until

    async def renew(self, run_id: str, map_name: str, pass_: Pass, page: int, owner: str, etag: str,
                    seconds: float) -> str:
        table = await self.tables.table("syncpages")
        entity = {"PartitionKey": encode_key((run_id, map_name, pass_)), "RowKey": f"{page:07d}-lease",
                  "Owner": owner, "Until": datetime.now(UTC) + timedelta(seconds=seconds)}
        meta = await table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                         match_condition=MatchConditions.IfNotModified)
        return str(meta["etag"])

    async def release(self, run_id: str, map_name: str, pass_: Pass, page: int, etag: str) -> None:
        table = await self.tables.table("syncpages")
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            await table.delete_entity(encode_key((run_id, map_name, pass_)), f"{page:07d}-lease", etag=etag,
                                      match_condition=MatchConditions.IfNotModified)

    # -- rows worth listing -------------------------------------------------------------------------
    async def note(self, run_id: str, notes: Sequence[RowNote]) -> None:
        table = await self.tables.table("syncrows")
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for n in notes:
            partition = encode_key((run_id, n.map))
            by_partition.setdefault(partition, []).append({
                "PartitionKey": partition, "RowKey": encode_key((n.outcome, encode_key(n.key))),
                "Outcome": n.outcome, "Key": encode_key(n.key), "Columns": json.dumps(list(n.columns)),
                "Detail": (n.detail or "")[:_DETAIL_CHARS],
                "Values": json.dumps(wire_value(n.values), ensure_ascii=False)[:_DETAIL_CHARS] if n.values else ""})
        for rows in by_partition.values():
            unique = list({r["RowKey"]: r for r in rows}.values())  # one operation per row in a transaction
            for start in range(0, len(unique), _TRANSACTION):
                await table.submit_transaction([("upsert", r, {"mode": UpdateMode.REPLACE})
                                                for r in unique[start:start + _TRANSACTION]])

    async def notes(self, run_id: str, map_name: str, *, outcome: RowOutcome | None = None,
                    limit: int | None = None) -> list[RowNote]:
        table = await self.tables.table("syncrows")
        query = "PartitionKey eq @p"
        parameters = {"p": encode_key((run_id, map_name))}
        if outcome is not None:
            # RowKeys of one outcome share its prefix: a range read, not a scan.
            query += " and RowKey ge @lo and RowKey lt @hi"
            parameters |= {"lo": outcome + "|", "hi": outcome + "}"}
        out: list[RowNote] = []
        async for e in table.query_entities(query, parameters=parameters):
            values = json.loads(e["Values"]) if e.get("Values") else None
            columns = tuple(json.loads(e.get("Columns") or "[]"))
            out.append(RowNote(map_name, decode_key(e["Key"]), e["Outcome"], columns, e.get("Detail") or None, values))
            if limit is not None and len(out) >= limit:
                break
        return out
