"""The composition root: one process-wide Runtime holding what the entry points share.

Built lazily from settings on first use and reused by every invocation of this worker process
(one Service Bus client, one Table Storage client, one HTTP client per environment), which is
what keeps the per-change cost low. Entry points: `rt = await get_runtime()`, then one core call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
from azure.core.exceptions import AzureError

from core.connectors.auth import LOCAL_ENGINE_OID, BearerAuth, IdentityTokens, LocalTokens, MsalTokens, TokenSource
from core.maps import MapDefinitionError, MapSet, TableMap
from core.maps.loader import maps_fingerprint
from core.maps.model import Side
from core.settings import Settings, get_settings
from core.store.queues import ChangeQueue, PageJobQueue

log = logging.getLogger(__name__)
MAPS_CHECK_SECONDS = 30.0  # a changed map (file or stored revision) runs within this (plus one invocation) everywhere

if TYPE_CHECKING:
    from core.connectors.dataverse import DataverseClient
    from core.connectors.fno import FnoClient
    from core.ops.alerts.service import Alerts
    from core.ops.errors import DeadLetterSource
    from core.ops.mapversions import MapVersions
    from core.ops.meter import Meter, OutcomeCounter
    from core.ops.metrics import Metrics
    from core.ops.steps import OwnSteps
    from core.store.activity import ActivityLog
    from core.store.errors import ErrorLog
    from core.store.holds import HoldStore
    from core.store.links import LinkStore
    from core.store.metrics import MetricStore
    from core.store.queuedepth import QueueDepthReader
    from core.store.tables import Tables
    from core.sync.catchup import MapModes
    from core.sync.initial import InitialSync
    from core.sync.sides import SidePort
    from core.sync.worker import Worker


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens: dict[str, TokenSource] = {}
        self._maps: MapSet | None = None
        self._maps_stamp: tuple[str, tuple[tuple[str, int], ...]] | None = None  # files, latest stored revisions
        self._maps_checked = 0.0
        self.maps_loaded_at: datetime | None = None
        self.maps_problem: str | None = None  # why the newer maps (files, stored revisions) are not the ones running

    @property
    def maps(self) -> MapSet:
        """The maps running now: the files overlaid by the latest stored revisions, as of the last load that passed
        validation. get_runtime loads them (stored revisions included) before first use; a runtime used without it
        runs the files alone until its first reload."""
        if self._maps is None:
            self._maps = MapSet.load([self.settings.maps_path])  # at start, invalid maps fail loudly
            self.maps_loaded_at = datetime.now(UTC)
            self._maps_checked = time.monotonic()
        return self._maps

    def maps_due(self) -> bool:
        """Whether to look at the maps again: never loaded with the stored revisions yet, or MAPS_CHECK_SECONDS
        went by (per instance)."""
        return self._maps_stamp is None or time.monotonic() - self._maps_checked >= MAPS_CHECK_SECONDS

    async def reload_maps(self) -> bool:
        """Look at the map files and the stored revisions (keys only) and load the set again if either changed: a
        valid new set replaces the running one for the next invocations (what holds maps is rebuilt; clients and
        stores are kept); an invalid one is reported and the running set stays. Whether a running set was replaced.

        The first load raises what it meets (invalid maps, Table Storage unreachable): nothing can run without
        knowing its maps. Later, a store that does not answer keeps the running set until the next check.
        """
        first = self._maps_stamp is None
        self._maps_checked = time.monotonic()
        try:
            latest = await self.map_versions.latest()
            files = await asyncio.to_thread(maps_fingerprint, [self.settings.maps_path])
            stamp = (files, tuple(sorted(latest.items())))
            if stamp == self._maps_stamp:
                return False
            maps = await self.map_versions.load(latest)
        except AzureError as error:
            if first:
                raise
            log.warning("maps: the stored revisions cannot be read (%s); the running maps stay until the next check",
                        type(error).__name__)
            return False
        except MapDefinitionError as error:
            if self._maps is None:
                raise
            self._maps_stamp = stamp  # a broken version is reported once, not every check
            self.maps_problem = f"the maps changed but are invalid; the previous version keeps running: {error}"
            log.error("maps: %s", self.maps_problem)
            return False
        replaced = self._maps is not None
        self._maps_stamp = stamp
        self._maps, self.maps_problem, self.maps_loaded_at = maps, None, datetime.now(UTC)
        if not replaced:
            return False
        for held in ("worker", "sides", "initial_sync", "modes"):
            self.__dict__.pop(held, None)
        if "dataverse" in self.__dict__:
            self.dataverse.write_headers = self._own_steps(self.dataverse)
        log.info("maps: reloaded %d map(s) from %s%s", len(maps), self.settings.maps_path, "".join(
            f", {name} {maps.file_of(name)}" for name, _ in stamp[1] if name in maps))
        return True

    @cached_property
    def map_versions(self) -> MapVersions:
        """Maps changed through the management API (functions/mapversions.py) and the running set they make."""
        from core.ops.mapversions import MapVersions
        from core.store.mapversions import MapVersionStore

        return MapVersions(MapVersionStore(self.tables), [self.settings.maps_path])

    @cached_property
    def queue(self) -> ChangeQueue:
        return ChangeQueue(self.settings.servicebus_connection.get_secret_value(), self.settings.changes_queue)

    @cached_property
    def tables(self) -> Tables:
        from core.store.tables import Tables

        return Tables(self.settings.table_storage_connection.get_secret_value())

    @cached_property
    def links(self) -> LinkStore:
        from core.store.links import LinkStore

        # Gathered: records applied side by side share queries and transactions (core.store.gather).
        return LinkStore(self.tables, gather=True)

    @cached_property
    def activity(self) -> ActivityLog:
        from core.store.activity import ActivityLog

        meter = self.meter
        return ActivityLog(self.tables, observe=None if meter is None else meter.observe)

    @cached_property
    def metric_store(self) -> MetricStore:
        from core.store.metrics import MetricStore

        return MetricStore(self.tables)

    @cached_property
    def meter(self) -> Meter | None:
        """This instance's per-minute counts (core.ops.meter); None when TELEMETRY_ENABLED is false."""
        if not self.settings.telemetry_enabled:
            return None
        from core.ops.meter import Meter

        def throttled(client: str) -> Callable[[], int]:
            # only a client this instance made can have been throttled; asking must not make one
            return lambda: self.__dict__[client].stats.throttled if client in self.__dict__ else 0

        return Meter(self.metric_store, flush_seconds=self.settings.metrics_flush_seconds,
                     throttles={"dataverse": throttled("dataverse"), "fno": throttled("fno")}, otel=_otel_counter())

    @cached_property
    def errors(self) -> ErrorLog:
        from core.store.errors import ErrorLog

        return ErrorLog(self.tables)

    @cached_property
    def dead_letters(self) -> tuple[DeadLetterSource, ...]:
        """The dead-letters the error log shows: the changes queue's and the fno-events queue's."""
        from core.ops.errors import DeadLetterSource
        from core.store.deadletters import DeadLetters

        connection = self.settings.servicebus_connection.get_secret_value()
        return (DeadLetterSource(DeadLetters(connection, self.settings.changes_queue), carries="changes"),
                DeadLetterSource(DeadLetters(connection, self.settings.fno_events_queue), carries="fno_events"))

    def tokens(self, environment_url: str) -> TokenSource:
        """One token source per environment, shared by every client of it (one msal cache, one token)."""
        url = environment_url.rstrip("/")
        if url not in self._tokens:
            settings = self.settings
            if settings.auth_mode == "local":
                self._tokens[url] = LocalTokens(settings.engine_user_id or LOCAL_ENGINE_OID)
            elif settings.auth_mode == "identity":
                self._tokens[url] = IdentityTokens(url + "/.default", settings.client_id)
            else:
                assert settings.tenant_id and settings.client_id and settings.client_secret  # checked by Settings
                self._tokens[url] = MsalTokens(settings.tenant_id, settings.client_id,
                                               settings.client_secret.get_secret_value(), url + "/.default")
        return self._tokens[url]

    @cached_property
    def dataverse(self) -> DataverseClient:
        from core.connectors.dataverse import DataverseClient

        url = str(self.settings.dataverse_url).rstrip("/")
        client = DataverseClient(url, self.tokens(url))
        # The engine's writes skip our own webhook steps (MSCRM.BypassBusinessLogicExecutionStepIds), so they
        # do not come back as echo webhooks; deployment refreshes the step ids (core.ops.steps).
        client.write_headers = self._own_steps(client)
        if self.settings.odata_batch_parts > 1:
            client.http.batch_concurrent(max_parts=self.settings.odata_batch_parts)
        return client

    def _own_steps(self, client: DataverseClient) -> OwnSteps:
        from core.ops.steps import OwnSteps

        return OwnSteps(client, entity_sets={m.dataverse.entity_set: m.dataverse.table for m in self.maps.values()})

    @cached_property
    def fno(self) -> FnoClient:
        from core.connectors.fno import FnoClient

        url = str(self.settings.fno_url).rstrip("/")
        client = FnoClient(url, self.tokens(url))
        if self.settings.odata_batch_parts > 1:
            # Each write in a changeset of its own: F&O takes writes in changesets, and one refused row
            # then fails alone instead of rolling back its neighbours.
            client.http.batch_concurrent(max_parts=self.settings.odata_batch_parts, each_write_atomic=True)
        return client

    # ---- deployment (functions/deploy.py) ----------------------------------------------------------
    @cached_property
    def fno_admin(self) -> httpx.AsyncClient:
        """F&O's business-events administration: the local simulator's /admin API (real F&O has none;
        there endpoints and activations are a one-time setup, see core.ops.deploy)."""
        url = str(self.settings.fno_url).rstrip("/")
        return httpx.AsyncClient(base_url=url, auth=BearerAuth(self.tokens(url)), timeout=30)

    @cached_property
    def worker(self) -> Worker:
        """The live-sync engine: the applier over both sides, with the logs it reports to."""
        from core.sync.apply import Applier
        from core.sync.sides import DataverseSide, FnoSide
        from core.sync.worker import Worker

        sides = self.sides
        assert isinstance(sides["dataverse"], DataverseSide) and isinstance(sides["fno"], FnoSide)
        applier = Applier(self.maps, self.links, sides["dataverse"], sides["fno"], engine_user=self.engine_user)
        settings = self.settings
        return Worker(applier, self.activity, self.errors, requeue=self.queue, holds=self.holds, links=self.links,
                      max_attempts=settings.apply_max_attempts,
                      retry_horizon=timedelta(seconds=settings.apply_retry_horizon_seconds),
                      backoff_cap=settings.apply_backoff_cap_seconds, engine_user=self.engine_user,
                      modes=self.modes, auto_pause_after=timedelta(seconds=settings.apply_auto_pause_seconds)
                      if settings.apply_auto_pause_seconds else None, waits=self.meter)

    # ---- metrics and alerts (functions/metrics.py, functions/alerts.py) --------------------------------
    async def metrics(self, window: timedelta) -> Metrics:
        """Every map's figures over the last `window`, all instances' counts together."""
        from core.ops.metrics import collect, map_directions
        from core.store.modes import ParkedStore

        states = await self.modes.modes.all()
        directions = map_directions((m.name, m.sends_to("dataverse"), m.sends_to("fno")) for m in self.maps.values())
        return await collect(directions, minutes=self.metric_store, errors=self.errors, parked=ParkedStore(self.tables),
                             modes={name: state.mode for name, state in states.items()}, window=window,
                             queue_depth=self.queue_depth)

    @cached_property
    def queue_depth(self) -> QueueDepthReader:
        from core.store.queuedepth import QueueDepthReader

        return QueueDepthReader(self.settings.servicebus_connection.get_secret_value(), self.settings.changes_queue)

    @cached_property
    def alerts(self) -> Alerts:
        """Alert rules, their evaluation (every minute and on request) and notifications."""
        from core.ops.alerts.service import Alerts
        from core.ops.notify import channels_from_settings
        from core.store.alerts import AlertStore

        settings = self.settings
        channels = channels_from_settings(settings, self.alert_http)
        console = f"{str(settings.app_url).rstrip('/')}/api/console" if settings.app_url else None
        return Alerts(AlertStore(self.tables), figures=self.metrics, open_errors=self.errors.open_summary,
                      modes=self.modes, channels=channels, console_url=console)

    @cached_property
    def alert_http(self) -> httpx.AsyncClient:
        """The alert webhook channel's client (kept here so that close() closes it)."""
        return httpx.AsyncClient(timeout=30)

    @cached_property
    def page_jobs(self) -> PageJobQueue:
        return PageJobQueue(self.settings.servicebus_connection.get_secret_value(), self.settings.sync_pages_queue)

    @cached_property
    def modes(self) -> MapModes:
        """Map modes: pause, resume with catch-up, stop, start (functions/modes.py), and live apply's gate."""
        from core.store.modes import ModeStore, ParkedStore
        from core.sync.catchup import MapModes

        async def dataverse_answers(table_map: TableMap) -> object:
            return await self.dataverse.query(table_map.dataverse.entity_set, top=1,
                                              select=[table_map.dataverse.primary_id])

        async def fno_answers(table_map: TableMap) -> object:
            return await self.fno.page(table_map.fno.entity_set, top=1, page_size=1)

        return MapModes(self.maps, ModeStore(self.tables), ParkedStore(self.tables), changes=self.queue,
                        jobs=self.page_jobs, probes={"dataverse": dataverse_answers, "fno": fno_answers},
                        engine_user=self.engine_user)

    @cached_property
    def sides(self) -> dict[Side, SidePort]:
        """Both sides of every map, shared by live apply and initial sync (one set of caches)."""
        from core.sync.sides import DataverseSide, FnoSide

        return {"dataverse": DataverseSide(self.dataverse, self.maps, self.links),
                "fno": FnoSide(self.fno, self.maps, self.links)}

    @cached_property
    def initial_sync(self) -> InitialSync:
        """Initial sync and reconciliation runs (functions/sync.py)."""
        from core.store.runs import RunStore
        from core.sync.initial import InitialSync

        settings = self.settings
        return InitialSync(self.maps, RunStore(self.tables), self.sides, links=self.links, errors=self.errors,
                           jobs=self.page_jobs, throttles={"dataverse": lambda: self.dataverse.stats.throttled,
                                                 "fno": lambda: self.fno.stats.throttled},
                           page_size=settings.sync_page_size, buckets=settings.apply_session_buckets)

    @cached_property
    def holds(self) -> HoldStore:
        from core.store.holds import HoldStore

        return HoldStore(self.tables)

    async def close(self) -> None:
        """Close every client this runtime made, and only those (closing must not make one): the counts not
        written yet first, Table Storage last. The local host calls it on a graceful stop (close_runtime); in
        Azure nothing does, and the process ending closes them. A client that fails to close is logged by the
        name of its error (its text may carry an address or a key) and the others are still closed."""
        made = self.__dict__
        for task in list(_background):
            task.cancel()
        closers: list[tuple[str, Callable[[], Any]]] = []
        if made.get("meter") is not None:
            closers.append(("meter", made["meter"].close))
        for name in ("dataverse", "fno", "fno_admin", "alert_http"):
            if name in made:
                closers.append((name, made[name].aclose))
        for name in ("queue", "page_jobs"):
            if name in made:
                closers.append((name, made[name].close))
        for source in made.get("dead_letters", ()):
            closers.append((f"dead letters of {source.carries}", source.letters.close))
        if "tables" in made:
            closers.append(("tables", made["tables"].close))
        for name, close in closers:
            try:
                await close()
            except Exception as error:
                log.warning("runtime: closing %s failed (%s)", name, type(error).__name__)

    @property
    def engine_user(self) -> str:
        """The identity the engine writes as (echo flagging of events it initiated)."""
        if self.settings.engine_user_id:
            return self.settings.engine_user_id
        return LOCAL_ENGINE_OID if self.settings.auth_mode == "local" else ""


def _otel_counter() -> OutcomeCounter | None:
    """The same counts as OpenTelemetry metrics, when telemetry is set up (core.ops.telemetry)."""
    from core.ops import telemetry
    from core.ops.meter import OtelOutcomes

    return OtelOutcomes(telemetry.instruments()) if telemetry.enabled() else None


_runtime: Runtime | None = None
_lock = asyncio.Lock()
_background: set[asyncio.Task[None]] = set()


async def get_runtime() -> Runtime:
    """The process-wide runtime (raises SettingsError on bad settings: callers turn it into a 500). Before first use
    it loads the maps, stored revisions included; then every MAPS_CHECK_SECONDS it looks at the map files and the
    stored revisions: a changed, valid set runs from the next call on, and the deployment (webhook steps, F&O
    events) is brought in line with it in the background."""
    global _runtime
    if _runtime is None:
        async with _lock:
            if _runtime is None:
                _runtime = Runtime(get_settings())
    runtime = _runtime
    if runtime.maps_due():
        await refresh_maps(runtime, only_if_due=True)
    return runtime


async def refresh_maps(runtime: Runtime, *, only_if_due: bool = False) -> bool:
    """Load the maps again if they changed (one check at a time per process), and deploy a new set in the
    background; the instance that stored a revision calls it at once. Whether the running set was replaced."""
    async with _lock:
        if only_if_due and not runtime.maps_due():
            return False  # another call checked while this one waited
        replaced = await runtime.reload_maps()
    if replaced:
        _redeploy(runtime)
    return replaced


def _redeploy(runtime: Runtime) -> None:
    settings = runtime.settings
    if not (settings.deploy_on_start and settings.app_url and settings.ingest_key):
        return
    from functions.deploy import run_deploy  # the entry point that deploys; imported late (it imports this)

    async def deploy_now() -> None:
        try:
            report = await run_deploy()
            log.info("maps: deployment after the reload: %s", report.counts())
        except Exception:
            log.exception("maps: deployment after the reload failed (the 30-minute deployment tries again)")

    task = asyncio.create_task(deploy_now())
    _background.add(task)
    task.add_done_callback(_background.discard)


def redeploying() -> bool:
    """Whether this instance is still deploying a reloaded map set (its webhook steps and images may be those
    of the previous set; online mode goes asynchronous meanwhile, core.sync.online)."""
    return bool(_background)


_closers: dict[str, Callable[[], Awaitable[None]]] = {}


def close_on_stop(name: str, close: Callable[[], Awaitable[None]]) -> None:
    """Have `close` run with close_runtime: for process-wide clients an entry point keeps outside the runtime (the
    virtual table service's, functions/odata.py and vt_events.py). A second call under the same name replaces it."""
    _closers[name] = close


async def close_runtime() -> None:
    """Close the process-wide runtime's clients, if one was built, and those handed to close_on_stop (the local
    host calls this when it stops); the next get_runtime() builds a new one."""
    global _runtime
    runtime, _runtime = _runtime, None
    closers = list(_closers.items())
    _closers.clear()
    for name, close in closers:
        try:
            await close()
        except Exception as error:  # its text may carry an address or a key: the name of the error only
            log.warning("runtime: closing %s failed (%s)", name, type(error).__name__)
    if runtime is not None:
        await runtime.close()


def reset_runtime(value: Any = None) -> None:
    """For tests that build a runtime by hand."""
    global _runtime
    _runtime = value
