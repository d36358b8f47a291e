"""Our own webhook steps, so the engine's Dataverse writes can skip them (reference §2.9).

Deployment (core.ops.deploy) registers `dw-oss: Create|Update|Delete of <table>` steps that send
Dataverse changes to the ingest function. A write the engine makes to Dataverse would fire them
too, and the webhook would come back as an echo that costs an ingest, a queue message and an
apply invocation before it is recognised and skipped. Dataverse honours
`MSCRM.BypassBusinessLogicExecutionStepIds: <id>,<id>` on a write: the listed steps do not run
for it, every other step (other people's plug-ins, flows, webhooks) still does.

`OwnSteps` is what `DataverseClient.write_headers` consults on each write: it knows the ids of our
steps per table and message and answers the header for a write to an entity set:
- found by querying `sdkmessageprocessingsteps` whose name starts with `dw-oss:` on first write,
  again after each deployment run (`deploy()` calls `refresh()`), and when older than `max_age`;
- only the steps a write can fire go in the header (create: Create; update: Update; upsert:
  Create and Update; delete: Delete), at most `limit` ids (the org setting
  `BypassBusinessLogicExecutionStepIdsLimit`, default 3; more ids get the request refused);
- a failed lookup never fails a write: it goes without the header (or with the ids known from
  the last good lookup) and the lookup is tried again after `retry_after` seconds; the echo
  rules in core.sync.apply still recognise whatever comes back;
- Dataverse refuses the header to a caller without the `prvBypassCustomBusinessLogic` privilege:
  `refused()` recognises that answer, the client sends the write again without the header, and
  the header stays off until the next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from core.connectors.dataverse import WriteOperation
from core.connectors.errors import ConnectorError

log = logging.getLogger("core.ops.steps")

STEP_PREFIX = "dw-oss:"
HEADER = "MSCRM.BypassBusinessLogicExecutionStepIds"
# Dataverse's default for the org setting BypassBusinessLogicExecutionStepIdsLimit (reference §2.9, §5).
DEFAULT_LIMIT = 3
MESSAGES: dict[WriteOperation, tuple[str, ...]] = {
    "create": ("Create",), "update": ("Update",), "upsert": ("Create", "Update"), "delete": ("Delete",),
}
_NAME = re.compile(r"dw-oss:\s*(Create|Update|Delete) of (\S+)\s*$")
_ACTIVE = 0


class StepQuery(Protocol):
    """The part of DataverseClient the lookup uses (reads only: they never consult the write headers)."""

    async def query(self, entity_set: str, *, filter: str | None = None,
                    select: Sequence[str] | None = None) -> list[dict[str, Any]]: ...


def parse_step_name(name: str) -> tuple[str, str] | None:
    """(message, table) of a step named `dw-oss: Update of account`, None for any other name."""
    match = _NAME.match(name.strip())
    return (match.group(1), match.group(2)) if match else None


class OwnSteps:
    def __init__(self, client: StepQuery, *, entity_sets: Mapping[str, str] | None = None,
                 max_age: float = 300.0, retry_after: float = 30.0, limit: int = DEFAULT_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`entity_sets`: entity set -> table logical name known up front (the maps'); tables of our
        steps missing from it are looked up in `EntityDefinitions`."""
        if limit < 1:
            raise ValueError("limit: at least one step id per request")
        self.client = client
        self.max_age = max_age
        self.retry_after = retry_after
        self.limit = limit
        self.clock = clock
        self._tables = {name.lower(): table.lower() for name, table in (entity_sets or {}).items()}
        self._ids: dict[tuple[str, str], tuple[str, ...]] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._off_until: float | None = None
        self._lock = asyncio.Lock()
        self.lookups = 0  # how many times Dataverse was asked (tests, diagnostics)

    # ---- what the client asks -------------------------------------------------------------------------

    async def for_write(self, entity_set: str, operation: WriteOperation) -> dict[str, str]:
        """`{HEADER: "<id>,<id>"}` for a write to `entity_set`, or {} (no step of ours, lookup failed,
        header refused)."""
        if self._off_until is not None and self.clock() < self._off_until:
            return {}
        if self._due():
            await self._refresh_once()
        table = self._tables.get(entity_set.lower())
        if table is None:
            return {}
        ids: list[str] = []
        for message in MESSAGES[operation]:
            ids += [i for i in self._ids.get((table, message), ()) if i not in ids]
        if not ids:
            return {}
        if len(ids) > self.limit:
            log.warning("steps: %d of our steps fire on a %s of %s, Dataverse takes %d ids per request; "
                        "the rest will echo (and be skipped as echoes)", len(ids), operation, table, self.limit)
            ids = ids[: self.limit]
        return {HEADER: ",".join(ids)}

    def refused(self, error: ConnectorError) -> bool:
        """True when Dataverse refused a write because of the bypass header (the caller lacks
        `prvBypassCustomBusinessLogic`): the header stays off until `max_age` has passed, and the
        caller sends the write again without it."""
        text = f"{error.message} {error.text}".lower()
        if error.status not in (401, 403) or "bypass" not in text:
            return False
        self._off_until = self.clock() + self.max_age
        log.warning("steps: Dataverse refused %s (%s); writing without it for %.0f s, so the engine's own "
                    "writes come back as webhooks (skipped as echoes). Give the application user's role the "
                    "privilege prvBypassCustomBusinessLogic.", HEADER, error.message[:300], self.max_age)
        return True

    # ---- keeping the ids ----------------------------------------------------------------------------------

    def ids(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(table, message) -> our step ids, as last found."""
        return dict(self._ids)

    def invalidate(self) -> None:
        """Look again before the next write."""
        self._fetched_at = None
        self._failed_at = None

    async def refresh(self) -> bool:
        """Look our steps up now (after a deployment); False when the lookup failed (ids kept)."""
        async with self._lock:
            return await self._lookup()

    def _due(self) -> bool:
        now = self.clock()
        if self._failed_at is not None and now - self._failed_at < self.retry_after:
            return False
        return self._fetched_at is None or now - self._fetched_at >= self.max_age

    async def _refresh_once(self) -> None:
        async with self._lock:
            if self._due():  # another write may have looked while this one waited
                await self._lookup()

    async def _lookup(self) -> bool:
        self.lookups += 1
        try:
            rows = await self.client.query(
                "sdkmessageprocessingsteps", filter=f"startswith(name,'{STEP_PREFIX}')",
                select=["sdkmessageprocessingstepid", "name", "statecode"])
            found: dict[tuple[str, str], list[str]] = {}
            for row in rows:
                parsed = parse_step_name(str(row.get("name") or ""))
                if parsed is None or row.get("statecode", _ACTIVE) != _ACTIVE:
                    continue  # a disabled step does not fire: no need to spend a slot of the header on it
                message, table = parsed
                found.setdefault((table.lower(), message), []).append(str(row["sdkmessageprocessingstepid"]).lower())
            await self._learn_entity_sets({table for table, _ in found})
        except Exception as error:  # never fail a write on this: the echo rules catch what comes back
            self._failed_at = self.clock()
            log.warning("steps: could not look up our webhook steps (%s: %s); writes go %s, next try in %.0f s",
                        type(error).__name__, error,
                        "with the ids found before" if self._ids else "without the bypass header",
                        self.retry_after)
            return False
        self._ids = {key: tuple(sorted(ids)) for key, ids in found.items()}
        self._fetched_at = self.clock()
        self._failed_at = None
        self._off_until = None
        log.info("steps: %d webhook steps of ours on %d tables", sum(map(len, self._ids.values())),
                 len({table for table, _ in self._ids}))
        return True

    async def _learn_entity_sets(self, tables: Iterable[str]) -> None:
        missing = sorted(set(tables) - set(self._tables.values()))
        if not missing:
            return
        rows = await self.client.query(
            "EntityDefinitions", filter=" or ".join(f"LogicalName eq '{table}'" for table in missing),
            select=["LogicalName", "EntitySetName"])
        for row in rows:
            if row.get("EntitySetName") and row.get("LogicalName"):
                self._tables[str(row["EntitySetName"]).lower()] = str(row["LogicalName"]).lower()
