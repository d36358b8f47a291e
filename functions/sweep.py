"""The sweep timer: at start and every SWEEP_INTERVAL_SECONDS, changes whose delivery failed while the app was down
are found and sent through the normal path (core.sync.sweep). SWEEP_ENABLED=false leaves it idle.

The timer's schedule is fixed (every minute) rather than an app setting: a `%SETTING%` schedule that an upgraded
app's settings lack stops the host from indexing the app at all."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import azure.functions as func

from core.ops.steps import OwnSteps
from core.settings import SettingsError
from core.store.sweeps import SweepStore
from core.sync.sweep import Sweep, SweepReport
from functions.runtime import Runtime, get_runtime

log = logging.getLogger("functions.sweep")
bp = func.Blueprint()
_one_at_a_time = asyncio.Lock()  # the startup run and a timer tick must not sweep one checkpoint twice at once
_last: float | None = None  # when this instance last swept (monotonic)


def sweep_of(rt: Runtime) -> Sweep:
    async def step_ids() -> list[str]:
        """Our webhook steps' ids, looked up now (a deployment at start may have just made them)."""
        steps = rt.dataverse.write_headers
        if not isinstance(steps, OwnSteps):
            return []
        await steps.refresh()
        return sorted({step for ids in steps.ids().values() for step in ids})

    return Sweep(rt.maps, SweepStore(rt.tables), rt.queue, rt.activity, dataverse=rt.dataverse, fno=rt.fno,
                 step_ids=step_ids, links=rt.links, buckets=rt.settings.apply_session_buckets,
                 overlap=timedelta(seconds=rt.settings.sweep_overlap_seconds),
                 dataverse_mode=rt.settings.sweep_dataverse, delta_http=rt.dataverse.http,
                 engine_user=rt.engine_user)


async def run_sweep() -> SweepReport:
    rt = await get_runtime()
    async with _one_at_a_time:
        return await sweep_of(rt).run()


@bp.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=True)
async def sweep(timer: func.TimerRequest) -> None:
    global _last
    try:
        settings = (await get_runtime()).settings
    except SettingsError as error:
        log.error("sweep: not run, the settings are invalid: %s", error)
        return
    if not settings.sweep_enabled:
        log.info("sweep: not run, SWEEP_ENABLED is false")
        return
    now = time.monotonic()
    if _last is not None and now - _last < settings.sweep_interval_seconds - 1:  # a tick early is on time
        return
    _last = now
    try:
        report = await run_sweep()
    except Exception:  # a sweep problem must never take the host down; the next one reads from the same checkpoint
        log.exception("sweep: failed")
        return
    found = sum(report.found.values())
    if found or report.problems:
        log.info("sweep: %d change(s) found, %d message(s) queued%s", found, report.queued,
                 "; problems: " + "; ".join(report.problems[:10]) if report.problems else "")
