"""The sweep: changes whose delivery failed while the app was down come back by themselves.

Dataverse does not retry a webhook whose connection is refused (reference §1.5: one retry, for 502/503/504
only), and F&O retries its event deliveries a few times, a second apart (§3.1). A change made while the app
restarts therefore never reaches ingest. At start and on a timer the sweep looks for such changes and sends
them down the normal path (routed and queued as ingest does, core.sync.ingest), where apply's echo, no-op and
stale checks make a change found twice, or already applied, harmless:

- Dataverse: the failed System Jobs (`asyncoperations`, statuscode 31) of the engine's own webhook steps
  (`dw-oss: ...`, core.ops.steps) completed since the checkpoint. A job's `data` holds the context it was to
  deliver (the simulator's behaviour; what the real service keeps there is unconfirmed): it is parsed as the
  webhook would have been, with the same event id (`OperationId` is the job), so the broker's duplicate
  detection drops a replay of a delivery that did arrive. A job whose `data` cannot be read becomes a
  re-read of the row it names (`regardingobjectid`), a delete when its message was Delete.
- F&O: the rows of every entity a map sends to Dataverse with `ModifiedDateTime` since the checkpoint, each a
  change that re-reads the record by key (as every F&O event does). A delete leaves no row to find.

Checkpoints (core.store.sweeps) are in the source's own clock (the newest `completedon` / `ModifiedDateTime`
seen); each sweep reads again `overlap` before it, for changes committed late, and skips the ids it already
sent from there. A row is sent whoever changed it last, as a re-read (`refetch`) naming its last writer as the
initiating user: when that is the engine, the row may still hold a user's earlier change that never arrived (of
another column; the engine's later write does not carry it), and apply sends what moved on that side since the
engine last knew it, nothing else (core.sync.decide). An F&O row whose change the live path already applied (the link
noted an F&O change at or after the row's `ModifiedDateTime`) is not sent. Whatever was found is in the activity log
(outcome `retrying`, reason `sweep: ...`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.events.dataverse import parse_webhook
from core.events.errors import PayloadError
from core.events.model import ChangeEvent
from core.maps import MapSet, MapValueError, TableMap
from core.maps.keys import record_key
from core.sync.decide import record_label
from core.sync.domain import ActivityEntry
from core.sync.ingest import ChangeSender, LinkFinder, known_order_keys, route_all

log = logging.getLogger("core.sync.sweep")

JOBS_SOURCE = "dataverse-jobs"
FAILED = 31  # asyncoperation.statuscode Failed
MAX_SEEN = 300  # ids kept from the overlap (a checkpoint row's property stays well under 64 KiB)
_MESSAGES = {"Create": "create", "Update": "update", "Delete": "delete"}
JOB_COLUMNS = ("asyncoperationid", "data", "completedon", "createdon", "messagename", "primaryentitytype",
               "_regardingobjectid_value", "_owningextensionid_value", "message")


@dataclass
class Checkpoint:
    since: datetime
    seen: dict[str, str] = field(default_factory=dict)  # id -> its change time (ISO), within the overlap
    token: str | None = None  # Dataverse change tracking: the last `@odata.deltaLink`


class Checkpoints(Protocol):
    async def get(self, source: str) -> Checkpoint | None: ...
    async def put(self, source: str, checkpoint: Checkpoint) -> None: ...


class Query(Protocol):
    """A side's `query` (DataverseClient.query, FnoClient.query: every page)."""

    async def query(self, entity_set: str, *, filter: str | None = None, select: Sequence[str] | None = None,
                    orderby: str | None = None) -> list[dict[str, Any]]: ...


class Links(LinkFinder, Protocol):
    """The link index (routing by row id) and the links themselves (what was applied, and when)."""

    async def get(self, map: str, key: tuple[str, ...]) -> Any: ...


class ActivitySink(Protocol):
    async def record(self, entries: list[ActivityEntry]) -> Any: ...


@dataclass
class Found:
    """One change the sweep found: its event, or why it could not be made one."""

    source_id: str
    at: datetime
    event: ChangeEvent | None
    how: str
    problem: str | None = None


@dataclass
class SweepReport:
    found: dict[str, int] = field(default_factory=dict)  # per source
    queued: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"found": self.found, "queued": self.queued, "skipped": self.skipped, "problems": self.problems}


def odata_time(at: datetime) -> str:
    """An OData DateTimeOffset literal, whole seconds, UTC (both sides keep whole seconds)."""
    return at.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def advanced(checkpoint: Checkpoint, found: Iterable[tuple[str, datetime]], overlap: timedelta) -> Checkpoint:
    """The checkpoint after a sweep that sent `found` (id, change time): `since` the newest time seen, and the
    ids within the overlap before it (newest first, at most MAX_SEEN)."""
    seen = {**checkpoint.seen, **{source_id: at.astimezone(UTC).isoformat() for source_id, at in found}}
    since = max([checkpoint.since, *(parse_time(at) or checkpoint.since for at in seen.values())])
    floor = (since - overlap).replace(microsecond=0)  # where the next sweep reads from (whole seconds, odata_time)
    kept = sorted(((at, i) for i, at in seen.items() if (parse_time(at) or since) >= floor), reverse=True)
    return Checkpoint(since=since, seen={i: at for at, i in kept[:MAX_SEEN]})


# -- Dataverse: failed System Jobs of our webhook steps -------------------------------------------------------
def job_filter(step_ids: Iterable[str], since: datetime) -> str:
    steps = " or ".join(f"_owningextensionid_value eq {step}" for step in sorted(set(step_ids)))
    return f"statuscode eq {FAILED} and ({steps}) and completedon ge {odata_time(since)}"


def job_change(job: Mapping[str, Any]) -> Found:
    """The change a failed System Job was to deliver: its `data` parsed as the webhook body, else the row it names
    re-read (or deleted, for a Delete)."""
    job_id = str(job.get("asyncoperationid") or "")
    at = parse_time(job.get("completedon")) or datetime.now(UTC)
    data = job.get("data")
    reason = ""
    if isinstance(data, str) and data.strip():
        try:
            return Found(job_id, at, parse_webhook(data.encode(), {}), "replayed the body of failed System Job")
        except PayloadError as error:
            reason = f"its data is not a webhook body ({error}); "
    message = _MESSAGES.get(str(job.get("messagename")))
    row = job.get("_regardingobjectid_value")
    table = job.get("primaryentitytype")
    if message is None or not row or not isinstance(table, str) or not table:
        return Found(job_id, at, None, "", f"failed System Job {job_id}: {reason}it names no row to read again")
    event = ChangeEvent(event_id=f"dv:{job_id}", source="dataverse", entity=table,
                        operation="delete" if message == "delete" else "refetch", record_id=str(row).lower(),
                        partial=True, occurred_at=parse_time(job.get("createdon")) or at)
    return Found(job_id, at, event, f"{reason}read again the row of failed System Job")


async def failed_jobs(client: Query, step_ids: Sequence[str], since: datetime) -> list[Mapping[str, Any]]:
    if not step_ids:
        return []
    rows: list[Mapping[str, Any]] = []
    for start in range(0, len(step_ids), 20):  # a handful of steps per query keeps the URL short
        rows += await client.query("asyncoperations", filter=job_filter(step_ids[start:start + 20], since),
                                   select=JOB_COLUMNS, orderby="completedon asc")
    return rows


# -- Dataverse: change tracking (reference §2.7) ----------------------------------------------------------------
class DeltaHttp(Protocol):
    """The part of the Dataverse client's HTTP layer (core.connectors.http.ODataHttp) a delta read uses."""

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, alone: bool = False) -> Any: ...


def changes_source(table: str) -> str:
    return f"dataverse-changes|{table}"


async def delta_read(http: DeltaHttp, entity_set: str, primary_id: str,
                     delta_link: str | None) -> tuple[list[dict[str, Any]], str]:
    """Every entry of a change-tracking read (changed rows, then `$deletedEntity` entries) and the next
    `@odata.deltaLink`: the initial read (all rows) when `delta_link` is None, else the changes since it."""
    headers = {"Prefer": "odata.track-changes,odata.maxpagesize=5000"}
    url, params = (entity_set, {"$select": f"{primary_id},_modifiedby_value"}) if delta_link is None else \
        (delta_link, None)
    entries: list[dict[str, Any]] = []
    while True:
        response = await http.request("GET", url, headers=headers, params=params, alone=True)
        body = json.loads(response.content)
        entries += list(body.get("value", []))
        if body.get("@odata.nextLink"):
            url, params = body["@odata.nextLink"], None
            continue
        link = body.get("@odata.deltaLink")
        if not isinstance(link, str) or not link:
            raise ValueError(f"{entity_set}: the change-tracking answer has no @odata.deltaLink (is Track changes on?)")
        return entries, link


def delta_change(table: str, primary_id: str, entry: Mapping[str, Any], now: datetime,
                 users: Mapping[str, str] | None = None) -> Found:
    """A change-tracking entry as a change event: a changed row is read again (its version from the etag, so a
    stale one is skipped), a deleted one deleted (its key through the link index). `users`: systemuserid -> the
    Entra object id the engine knows itself by, so a row the engine wrote last names the engine as its initiating
    user (as a webhook's InitiatingUserAzureActiveDirectoryObjectId does): apply then sends only what someone else
    changed in it."""
    if entry.get("reason") == "deleted" or "$deletedEntity" in str(entry.get("@odata.context", "")):
        row = str(entry.get("id") or "").lower()
        event = ChangeEvent(event_id=f"dv-delta:{table}:{row}:deleted", source="dataverse", entity=table,
                            operation="delete", record_id=row, partial=True, occurred_at=now) if row else None
        return Found(f"{table}:{row}", now, event, "deleted in Dataverse (change tracking)",
                     None if row else f"{table}: a deleted entry without an id")
    row = str(entry.get(primary_id) or "").lower()
    etag = str(entry.get("@odata.etag") or "")
    version = "".join(c for c in etag if c.isdigit()) or None
    if not row:
        return Found(f"{table}:?", now, None, "", f"{table}: a changed row without {primary_id}")
    modified_by = str(entry.get("_modifiedby_value") or "").lower() or None
    event = ChangeEvent(event_id=f"dv-delta:{table}:{row}:{version or now.isoformat()}", source="dataverse",
                        entity=table, operation="refetch", record_id=row, version=version, partial=True,
                        occurred_at=now, initiated_by=(users or {}).get(modified_by or "", modified_by))
    return Found(f"{table}:{row}", now, event, "changed in Dataverse (change tracking)")


# -- F&O: rows changed since the checkpoint ---------------------------------------------------------------------
def fno_source(entity_set: str) -> str:
    return f"fno|{entity_set}"


def fno_change(table_map: TableMap, row: Mapping[str, Any]) -> Found:
    """A row changed in F&O as a change event that re-reads it by key (the F&O events' way)."""
    keys = {name: row.get(name) for name in table_map.key_fields("fno")}
    company = None
    if table_map.company is not None:
        code = row.get(table_map.company.fno)
        if isinstance(code, str) and code:
            keys[table_map.company.fno] = code.lower()
            company = code.upper()
    modified = str(row.get("ModifiedDateTime") or "")
    at = parse_time(modified) or datetime.now(UTC)
    identity = json.dumps([table_map.fno.entity_set, *(str(v).upper() for v in keys.values())])
    source_id = hashlib.sha256(identity.encode()).hexdigest()[:32]
    # Stable per row version: a row found twice at one time is one message (the broker drops the second).
    event_id = "fno-sweep:" + hashlib.sha256(f"{identity}|{modified}".encode()).hexdigest()[:40]
    if any(v is None or v == "" for v in keys.values()):
        return Found(source_id, at, None, "", f"{table_map.fno.entity_set}: a changed row without its key fields")
    # A re-read naming ModifiedBy as the initiating user: when the engine wrote the row last, apply sends only what
    # moved in it since (a user's change whose event never came), not the engine's own values (module docstring).
    # The simulator's ModifiedBy is the caller's object id; a real F&O's is its user id.
    event = ChangeEvent(event_id=event_id, source="fno", entity=table_map.fno.entity_set, operation="refetch",
                        company=company, keys=keys, partial=True, occurred_at=at,
                        initiated_by=str(row.get("ModifiedBy") or "") or None)
    return Found(source_id, at, event, f"changed in F&O at {modified} (ModifiedDateTime)")


def dataverse_tables(maps: MapSet) -> dict[str, TableMap]:
    """Table -> a map that sends it to F&O (one change-tracking read per table serves all its maps)."""
    found: dict[str, TableMap] = {}
    for table_map in maps.values():
        if table_map.enabled and table_map.sends_to("fno"):
            found.setdefault(table_map.dataverse.table, table_map)
    return found


def fno_entities(maps: MapSet) -> dict[str, TableMap]:
    """Entity set -> a map that sends it to Dataverse (one read per entity serves all its maps)."""
    found: dict[str, TableMap] = {}
    for table_map in maps.values():
        if table_map.enabled and table_map.sends_to("dataverse"):
            found.setdefault(table_map.fno.entity_set, table_map)
    return found


# -- the sweep ----------------------------------------------------------------------------------------------------
class Sweep:
    def __init__(self, maps: MapSet, checkpoints: Checkpoints, queue: ChangeSender, activity: ActivitySink, *,
                 dataverse: Query, fno: Query, step_ids: Callable[[], Awaitable[list[str]]],
                 links: Links | None = None, buckets: int = 16, overlap: timedelta = timedelta(seconds=60),
                 dataverse_mode: str = "jobs", delta_http: DeltaHttp | None = None, engine_user: str = "",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """`dataverse_mode`: `jobs` (failed System Jobs), `changes` (change tracking, needs `delta_http`) or
        `both`."""
        self.maps = maps
        self.checkpoints = checkpoints
        self.queue = queue
        self.activity = activity
        self.dataverse = dataverse
        self.fno = fno
        self.step_ids = step_ids
        self.links = links
        self.buckets = buckets
        self.overlap = overlap
        self.dataverse_mode = dataverse_mode
        self.delta_http = delta_http
        self.engine_user = engine_user.strip("{}").lower()
        self._users: dict[str, str] | None = None
        self.clock = clock

    async def run(self) -> SweepReport:
        """Sweep both sides; one source failing (down, refusing the query) is reported and the others go on."""
        report = SweepReport()
        if self.dataverse_mode in ("jobs", "both"):
            await self._source(report, JOBS_SOURCE, self._dataverse_jobs)
        if self.dataverse_mode in ("changes", "both") and self.delta_http is not None:
            for table_map in dataverse_tables(self.maps).values():
                await self._changes(report, table_map)
        for entity_set, table_map in fno_entities(self.maps).items():
            async def rows(since: datetime, table_map: TableMap = table_map) -> list[Found]:
                return await self._fno_rows(table_map, since)
            await self._source(report, fno_source(entity_set), rows)
        return report

    async def _dataverse_jobs(self, since: datetime) -> list[Found]:
        step_ids = await self.step_ids()
        return [job_change(job) for job in await failed_jobs(self.dataverse, step_ids, since)]

    async def _fno_rows(self, table_map: TableMap, since: datetime) -> list[Found]:
        fields = [*table_map.key_fields("fno"), *([table_map.company.fno] if table_map.company else [])]
        rows = await self.fno.query(table_map.fno.entity_set, filter=f"ModifiedDateTime ge {odata_time(since)}",
                                    select=[*dict.fromkeys([*fields, "ModifiedDateTime", "ModifiedBy"])],
                                    orderby="ModifiedDateTime asc")
        return [await self._unless_applied(table_map, fno_change(table_map, row)) for row in rows]

    async def _unless_applied(self, table_map: TableMap, found: Found) -> Found:
        """A row whose change the live path applied already: not sent again (the sweep is for what the live path
        missed). The link notes the time of each F&O change it applied (`fno_at`, the event's time); one at or after
        the row's `ModifiedDateTime` (whole seconds) covers the row as it is. A row the engine wrote last has no such
        note (the echo of the engine's own write moves no change time), so it is sent: it may also hold a user's
        change whose event never came, which apply finds by what moved since the engine last knew the row."""
        event = found.event
        if event is None or self.links is None:
            return found
        try:
            link = await self.links.get(table_map.name, record_key(table_map, "fno", event.keys))
        except MapValueError:
            return found
        noted = link.versions.get("fno_at") if link is not None else None
        if noted is not None and datetime.fromisoformat(noted) >= found.at:
            return Found(found.source_id, found.at, None, "applied live already")
        return found

    async def _engine_users(self) -> dict[str, str]:
        """The engine's systemuserid -> its Entra object id (looked up once; {} when unknown or not found)."""
        if self._users is None:
            self._users = {}
            if self.engine_user:
                try:
                    rows = await self.dataverse.query("systemusers", select=["systemuserid"], filter=(
                        f"azureactivedirectoryobjectid eq {self.engine_user}"))
                except Exception as error:  # then its writes are recognised by their values, as without the id
                    log.warning("sweep: the engine's systemuser could not be looked up (%s)", error)
                    self._users = None
                    return {}
                self._users = {str(r["systemuserid"]).lower(): self.engine_user for r in rows}
        return self._users

    async def _changes(self, report: SweepReport, table_map: TableMap) -> None:
        """Dataverse change tracking of one table: the changes since the stored delta link (the first sweep only
        keeps the link of an initial read)."""
        assert self.delta_http is not None
        table, source = table_map.dataverse.table, changes_source(table_map.dataverse.table)
        try:
            checkpoint = await self.checkpoints.get(source)
            entries, link = await delta_read(self.delta_http, table_map.dataverse.entity_set,
                                             table_map.dataverse.primary_id, checkpoint.token if checkpoint else None)
        except Exception as error:  # a side down or refusing: the next sweep reads from the same token
            report.problems.append(f"{source}: {type(error).__name__}: {str(error)[:300]}")
            log.warning("sweep: %s not swept: %s", source, error)
            return
        users = await self._engine_users() if checkpoint is not None and entries else {}
        found = [] if checkpoint is None else [
            delta_change(table, table_map.dataverse.primary_id, entry, self.clock(), users) for entry in entries]
        report.found[source] = len(found)
        report.problems += [f"{source}: {f.problem}" for f in found if f.problem]
        if any(f.event for f in found):
            await self._send(report, [f for f in found if f.event is not None])
        await self.checkpoints.put(source, Checkpoint(since=self.clock(), token=link))
        if found:
            log.info("sweep: %s: %d change(s) found", source, len(found))

    async def _source(self, report: SweepReport, source: str,
                      find: Callable[[datetime], Awaitable[list[Found]]]) -> None:
        checkpoint = await self.checkpoints.get(source)
        if checkpoint is None:
            # The first sweep starts now: what failed before the engine first ran is initial sync's business. The
            # next one reads from `since - overlap`, so `since` is set that far ahead: it reads from now exactly.
            await self.checkpoints.put(source, Checkpoint(since=self.clock() + self.overlap))
            report.found[source] = 0
            return
        try:
            found = [f for f in await find(checkpoint.since - self.overlap)
                     if checkpoint.seen.get(f.source_id) != f.at.astimezone(UTC).isoformat()]
        except Exception as error:  # a side down or refusing: the next sweep reads from the same checkpoint
            report.problems.append(f"{source}: {type(error).__name__}: {str(error)[:300]}")
            log.warning("sweep: %s not swept: %s", source, error)
            return
        report.found[source] = len(found)
        events = [f for f in found if f.event is not None]
        report.problems += [f"{source}: {f.problem}" for f in found if f.problem]
        if events:
            await self._send(report, events)
        await self.checkpoints.put(source, advanced(checkpoint, ((f.source_id, f.at) for f in found), self.overlap))
        if found:
            log.info("sweep: %s: %d change(s) found, %d sent again", source, len(found), len(events))

    async def _send(self, report: SweepReport, found: list[Found]) -> None:
        events = [f.event for f in found if f.event is not None]
        how = {f.event.event_id: f for f in found if f.event is not None}
        known = await known_order_keys(events, self.maps, self.links)
        routing = route_all(events, self.maps, buckets=self.buckets, known=known)
        await self.queue.send(routing.changes)  # raises: the checkpoint stays, the next sweep sends them again
        report.queued += len(routing.changes)
        report.skipped += len(routing.skipped)
        entries = [ActivityEntry(
            map=change.event.map or "unmapped", key=record_label(change.event, self.maps), source=change.event.source,
            operation=change.event.operation, outcome="retrying",
            reason=f"sweep: {how[change.event.event_id].how} {how[change.event.event_id].source_id}"
            if change.event.event_id.startswith("dv:") else f"sweep: {how[change.event.event_id].how}",
            event_id=change.event.event_id, message_id=change.message_id) for change in routing.changes]
        try:
            await self.activity.record(entries)
        except Exception as error:  # the changes are queued; the log line says what the activity log lacks
            log.warning("sweep: %d change(s) sent again but not in the activity log (%s)", len(entries), error)
