"""The validity timer: every minute, the date-effective rows whose window opened or closed since the last run are sent
again through the normal path (core.sync.validity), so a future-dated address becomes primary on its date without a
user touching it. VALIDITY_ENABLED=false leaves it idle.

The schedule is fixed (every minute) rather than an app setting, as the sweep's: a `%SETTING%` schedule that an
upgraded app's settings lack stops the host from indexing the app at all."""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from core.settings import SettingsError
from core.store.sweeps import SweepStore
from core.sync.validity import ValidityReport, ValiditySweep
from functions.runtime import Runtime, get_runtime

log = logging.getLogger("functions.validity")
bp = func.Blueprint()
_one_at_a_time = asyncio.Lock()  # the startup run and a timer tick must not move one checkpoint twice at once


def validity_of(rt: Runtime) -> ValiditySweep:
    return ValiditySweep(
        rt.maps,
        SweepStore(rt.tables),
        rt.queue,
        rt.activity,
        fno=rt.fno,
        links=rt.links,
        buckets=rt.settings.apply_session_buckets,
    )


async def run_validity() -> ValidityReport:
    rt = await get_runtime()
    async with _one_at_a_time:
        return await validity_of(rt).run()


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=True)
async def validity(timer: func.TimerRequest) -> None:
    try:
        settings = (await get_runtime()).settings
    except SettingsError as error:
        log.error("validity: not run, the settings are invalid: %s", error)
        return
    if not settings.validity_enabled:
        log.info("validity: not run, VALIDITY_ENABLED is false")
        return
    try:
        report = await run_validity()
    except Exception:  # a problem here must never take the host down; the next run reads from the same checkpoint
        log.exception("validity: failed")
        return
    found = sum(report.found.values())
    if found or report.problems:
        log.info(
            "validity: %d row(s) crossed their validity, %d message(s) queued%s",
            found,
            report.queued,
            "; problems: " + "; ".join(report.problems[:10]) if report.problems else "",
        )
