"""Initial sync and reconciliation: start a run, work its page jobs, cancel it, show its progress.

A run is planned once (maps in dependency order, cycles broken by deferring lookups to a patch pass),
then driven by its page jobs alone (core.sync.runs): each job reads its page, sends the next page's
job, works the rows (core.sync.pages), records its checkpoint and, when it finished its pass, sends the
first job of the run's next pass. A host killed at any moment loses nothing: the broker redelivers the
job in flight, a done page is skipped, a half-done page is compared again and writes only what the
target still lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from core.connectors.errors import ConnectorError
from core.errors import BadInput
from core.maps import MapSet, TableMap, plan_sync
from core.maps.model import Side
from core.store.runs import RunChanged, RunStore, new_run_id
from core.sync.decide import other
from core.sync.errors import error_text, is_transient
from core.sync.pages import ErrorRecorder, Gate, LinkWriter, PageResult, PageWork
from core.sync.runs import (
    TERMINAL,
    PageJob,
    PageMark,
    Pass,
    RowNote,
    RowOutcome,
    Run,
    RunKind,
    RunStateError,
    RunStatus,
    Tally,
    pass_done,
    progress_of,
)
from core.sync.sides import SidePort, SourcePage

log = logging.getLogger(__name__)
RETRY_KEYS_PER_PAGE = 200


class RunRequest(BaseModel):
    """What `POST .../sync/runs` takes."""

    model_config = ConfigDict(extra="forbid")

    kind: RunKind = "initial"
    maps: list[str] = Field(default_factory=list, description="maps to run; empty: every enabled map")
    source: Side | None = Field(None, description="the side read (the run's truth); default: each map's primary")
    dry_run: bool = False
    retry_failed_of: str | None = Field(None, description="re-run only the rows this run failed on")


class RunNotFound(LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}")
        self.run_id = run_id


class BadRun(BadInput):
    """A run that cannot be started as asked; `field` names what is wrong."""


class PageJobs(Protocol):
    async def send(self, jobs: list[PageJob], *, at: datetime | None = None) -> None: ...


PAGES_AT_ONCE = 4  # pages one worker process works side by side; the rest wait their turn (locks renewed)
LEASE_SECONDS = 60.0  # a page's lease; renewed while the page is worked, so only a dead worker's lapses
RENEW_EVERY = 20.0


class InitialSync:
    def __init__(self, maps: MapSet, runs: RunStore, sides: Mapping[Side, SidePort], *, links: LinkWriter,
                 errors: ErrorRecorder, jobs: PageJobs, throttles: Mapping[Side, Callable[[], int]],
                 page_size: int = 1000, buckets: int = 16) -> None:
        self.maps = maps
        self.runs = runs
        self.sides = sides
        self.links = links
        self.errors = errors
        self.jobs = jobs
        self.throttles = throttles
        self.page_size = page_size
        self.buckets = buckets
        self.gates: dict[Side, Gate] = {"dataverse": Gate(), "fno": Gate()}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # names this worker's leases
        # More pages at once only queue for the same CPU and targets, and starve the host's HTTP routes.
        self._pages = asyncio.Semaphore(PAGES_AT_ONCE)

    # -- starting and stopping --------------------------------------------------------------------
    async def start(self, request: RunRequest, *, requested_by: str | None = None) -> Run:
        if request.retry_failed_of:
            return await self._retry(request.retry_failed_of, requested_by)
        chosen = self._chosen(request.maps)
        plan = plan_sync(chosen)
        if plan.unbreakable:
            raise BadRun("maps", "cycles of required lookups cannot be broken: "
                         + "; ".join(" -> ".join(c) for c in plan.unbreakable))
        sources: dict[str, Side] = {}
        for name in plan.order:
            table_map = self.maps[name]
            source = request.source or table_map.primary
            if not table_map.sends_to(other(source)):
                raise BadRun("source", f"map {name!r} maps nothing from {_side(source)} to {_side(other(source))}")
            sources[name] = source
        run = Run(id=new_run_id(), kind=request.kind, maps=list(plan.order), sources=sources,
                  deferred={name: plan.deferred_for(name) for name in plan.order if plan.deferred_for(name)},
                  dry_run=request.dry_run, requested_by=requested_by)
        await self.runs.create(run)
        await self._begin(run)
        return run

    def _chosen(self, names: Sequence[str]) -> list[TableMap]:
        if not names:
            chosen = [m for m in self.maps.values() if m.enabled]
            if not chosen:
                raise BadRun("maps", "no map is enabled")
            return chosen
        unknown = [n for n in names if n not in self.maps]
        if unknown:
            raise BadRun("maps", f"unknown map(s): {', '.join(unknown)} (known: {', '.join(sorted(self.maps))})")
        return [self.maps[n] for n in dict.fromkeys(names)]

    async def _retry(self, run_id: str, requested_by: str | None) -> Run:
        earlier = await self.runs.get(run_id)
        if earlier is None:
            raise RunNotFound(run_id)
        failing = [name for name in earlier.maps if await self.runs.notes(run_id, name, outcome="failed", limit=1)]
        if not failing:
            raise BadRun("retry_failed_of", f"run {run_id} has no failed rows")
        run = Run(id=new_run_id(), kind="initial" if earlier.kind == "initial" else "repair", maps=failing,
                  sources={n: earlier.sources[n] for n in failing}, deferred={}, retry_of=run_id,
                  requested_by=requested_by)
        await self.runs.create(run)
        await self._begin(run)
        return run

    async def _begin(self, run: Run) -> None:
        first_map, first_pass = run.passes()[0]
        await self.jobs.send([PageJob(run=run.id, map=first_map, pass_=first_pass, page=0)])

    async def cancel(self, run_id: str) -> Run:
        for _ in range(5):
            run = await self.get(run_id)
            if run.status in TERMINAL:
                raise RunStateError(f"run {run_id} is {run.status} already")
            run.move("cancelled", "cancelled by request: pages in flight finish, no new page starts")
            try:
                return await self.runs.save(run)
            except RunChanged:
                continue
        raise RunStateError(f"run {run_id} kept changing; try again")

    async def get(self, run_id: str) -> Run:
        run = await self.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    # -- the page jobs -----------------------------------------------------------------------------
    async def handle(self, job: PageJob) -> None:
        async with self._pages:
            await self._handle(job)

    async def _handle(self, job: PageJob) -> None:
        run = await self.runs.get(job.run)
        if run is None:
            log.warning("page job of unknown run %s dropped", job.run)
            return
        if run.status in TERMINAL:
            return
        if run.status == "queued":
            run = await self._move(run, "running")
            if run.status in TERMINAL:
                return
        etag, until = await self.runs.claim(run.id, job.map, job.pass_, job.page, self.owner, LEASE_SECONDS)
        if etag is None:
            # Another worker has this page now (this is a second delivery of its job): look again once its
            # lease would have lapsed, so a worker that died does not leave the page undone.
            await self.jobs.send([job.model_copy(update={"wait": job.wait + 1})],
                                 at=until + timedelta(seconds=1))
            return
        lease = asyncio.create_task(self._keep(run.id, job, etag))
        try:
            marks = await self.runs.marks(run.id, job.map, job.pass_)
            if any(m.page == job.page and m.state == "done" for m in marks):
                await self._advance(run, job)  # a job delivered again: its page is done; make sure the run moves on
                return
            await self._work(run, job)
        finally:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                etag = await lease
            if etag:
                await self.runs.release(run.id, job.map, job.pass_, job.page, etag)

    async def _keep(self, run_id: str, job: PageJob, etag: str) -> str:
        """Renew the page's lease while it is worked; the last etag (to release it)."""
        try:
            while True:
                await asyncio.sleep(RENEW_EVERY)
                etag = await self.runs.renew(run_id, job.map, job.pass_, job.page, self.owner, etag, LEASE_SECONDS)
        except asyncio.CancelledError:
            return etag
        except Exception:  # lost it (taken over after a stall): finish the page anyway; rows are compared first
            log.warning("lease of %s page %d of run %s lost", job.map, job.page, run_id, exc_info=True)
            return ""

    async def _work(self, run: Run, job: PageJob) -> None:
        table_map = self._map_for(run, job)
        try:
            page = await self._read(run, job, table_map)
        except ConnectorError as error:
            if is_transient(error):
                raise  # the broker delivers the job again
            # A source that refuses the query will refuse it every time: the run stops, saying why.
            await self._move(run, "failed", f"map {job.map!r}: reading page {job.page} ({job.pass_}) failed: "
                             f"{error_text(error)}")
            return
        last = page.next_link is None
        if not last:
            await self.jobs.send([PageJob(run=run.id, map=job.map, pass_=job.pass_, page=job.page + 1,
                                          next_link=page.next_link)])
        await self.runs.mark(run.id, job.map, job.pass_, PageMark(job.page, "read", last, Tally(read=len(page.rows))))
        target = other(run.sources[job.map])
        work = PageWork(run, table_map, job.pass_, self.sides, maps=self.maps, errors=self.errors,
                        gate=self.gates[target], throttled=self.throttles[target],
                        links=self.links if run.writes else None, buckets=self.buckets)
        result: PageResult = (await work.orphans(page.rows) if job.pass_ == "orphans"
                              else await work.rows(page.rows, filtered=page.filtered))
        if result.links and run.writes:
            await self.links.put_many(result.links)
        if result.notes:
            await self.runs.note(run.id, result.notes)
        await self.runs.mark(run.id, job.map, job.pass_, PageMark(job.page, "done", last, result.tally))
        await self._advance(run, job)

    def _map_for(self, run: Run, job: PageJob) -> TableMap:
        """The map as the pass writes it: the rows pass leaves out the lookups a cycle defers."""
        table_map = self.maps[job.map]
        deferred = set(run.deferred.get(job.map, []))
        if job.pass_ != "rows" or not deferred:
            return table_map
        kept = [lookup for lookup in table_map.lookups if lookup.dataverse not in deferred]
        return table_map.model_copy(update={"lookups": kept})

    async def _read(self, run: Run, job: PageJob, table_map: TableMap) -> SourcePage:
        source = run.sources[job.map]
        if run.retry_of is not None:
            # Just the rows the earlier run failed on: its notes, a slice per page.
            notes = await self.runs.notes(run.retry_of, job.map, outcome="failed")
            keys = sorted({n.key for n in notes})
            chunk = keys[job.page * RETRY_KEYS_PER_PAGE:(job.page + 1) * RETRY_KEYS_PER_PAGE]
            found = await self.sides[source].read_keys(table_map, chunk)
            more = (job.page + 1) * RETRY_KEYS_PER_PAGE < len(keys)
            return SourcePage(list(found.values()), f"retry:{job.page + 1}" if more else None, filtered=False)
        reading = other(source) if job.pass_ == "orphans" else source
        return await self.sides[reading].read_page(table_map, next_link=job.next_link, page_size=self.page_size)

    async def _advance(self, run: Run, job: PageJob) -> None:
        """When the job's pass is done: start the run's next pass, or complete the run."""
        if not pass_done(await self.runs.marks(run.id, job.map, job.pass_)):
            return
        following = run.after(job.map, job.pass_)
        if following is not None:
            # Pages finishing together may both get here: the page's message id makes it one job.
            await self.jobs.send([PageJob(run=run.id, map=following[0], pass_=following[1], page=0)])
            return
        await self._move(run, "completed", "every map done")

    async def _move(self, run: Run, status: RunStatus, message: str | None = None) -> Run:
        for _ in range(5):
            if run.status == status or run.status in TERMINAL:
                return run
            run.move(status, message)
            try:
                return await self.runs.save(run)
            except RunChanged:
                fresh = await self.runs.get(run.id)
                if fresh is None:
                    return run
                run = fresh
        return run

    # -- views ---------------------------------------------------------------------------------------
    async def view(self, run_id: str) -> dict[str, Any]:
        run = await self.get(run_id)
        return await self._view(run, samples=True)

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return [await self._view(run, samples=False) for run in await self.runs.recent(limit)]

    async def _view(self, run: Run, *, samples: bool) -> dict[str, Any]:
        progress = []
        totals = Tally()
        for name in run.maps:
            marks: dict[Pass, list[PageMark]] = {}
            started: dict[Pass, Any] = {}
            for pass_ in {p for n, p in run.passes() if n == name}:
                marks[pass_], started[pass_] = await self.runs.marks_since(run.id, name, pass_)
            item = progress_of(run, name, marks, started=started)
            totals.add(item.tally)
            progress.append(item.as_dict())
        sample: list[dict[str, Any]] = []
        if samples and run.dry_run:
            for name in run.maps:
                sample += [n.as_dict() for n in await self.runs.notes(run.id, name, outcome="sample", limit=20)]
        return {"id": run.id, "kind": run.kind, "status": run.status, "dry_run": run.dry_run,
                "retry_of": run.retry_of, "created_at": run.created_at.isoformat(),
                "updated_at": run.updated_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None, "message": run.message,
                "requested_by": run.requested_by, "plan": [f"{p} {n}" for n, p in run.passes()],
                "deferred": run.deferred, "totals": totals.as_dict(), "maps": progress, "sample": sample}

    async def drift(self, run_id: str, *, map_name: str | None = None, outcome: RowOutcome | None = None,
                    limit: int = 1000) -> list[dict[str, Any]]:
        run = await self.get(run_id)
        if map_name is not None and map_name not in run.maps:
            raise BadRun("map", f"run {run_id} does not cover map {map_name!r} (it covers {', '.join(run.maps)})")
        items: list[RowNote] = []
        for name in [map_name] if map_name else run.maps:
            items += await self.runs.notes(run_id, name, outcome=outcome, limit=limit - len(items))
            if len(items) >= limit:
                break
        return [n.as_dict() for n in items if n.outcome != "sample" or outcome == "sample"]


def _side(side: Side) -> str:
    return "F&O" if side == "fno" else "Dataverse"
