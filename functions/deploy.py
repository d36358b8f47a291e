"""Map deployment: at host start (and every 30 minutes, idempotently) and on POST /api/manage/v1/deploy.

Registers what the enabled maps need for live sync (core.ops.deploy): Dataverse webhook steps on the
ingest endpoint and F&O data-event activations. Needs APP_URL and INGEST_KEY; DEPLOY_ON_START=false
leaves the timer idle (the admin route still deploys on request).
"""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from core.ops.deploy import DeployReport, deploy
from core.settings import Settings, SettingsError
from functions.http import json_response, problem, roles_refusal, settings_or_problem
from functions.runtime import Runtime, get_runtime

log = logging.getLogger("functions.deploy")
bp = func.Blueprint()
# The startup timer and the admin route may overlap; two runs at once could both create the same step.
_one_at_a_time = asyncio.Lock()


def missing_settings(settings: Settings) -> list[str]:
    return [name for name, value in (("APP_URL", settings.app_url), ("INGEST_KEY", settings.ingest_key)) if not value]


async def run_deploy() -> DeployReport:
    rt = await get_runtime()
    settings = rt.settings
    assert settings.app_url is not None and settings.ingest_key is not None  # checked by the callers
    async with _one_at_a_time:
        try:
            report = await deploy(rt.maps, dataverse=rt.dataverse, fno_admin=rt.fno_admin,
                                  app_url=str(settings.app_url), ingest_key=settings.ingest_key.get_secret_value())
        except Exception as error:
            await _remember(rt, ok=False, detail=f"{type(error).__name__}: {str(error)[:500]}")
            raise
    await _remember(rt, ok=report.ok, detail=", ".join(f"{k} {v}" for k, v in report.counts().items()) + (
        "" if report.ok else "; failed: " + "; ".join(f"{i.kind} {i.name}: {i.detail}" for i in report.items
                                                      if i.status == "failed")))
    return report


async def _remember(rt: Runtime, *, ok: bool, detail: str) -> None:
    """The outcome for the metrics and the `deployment_failed` alert; not being able to write it fails nothing."""
    try:
        await rt.metric_store.record_deployment(ok, detail)
    except Exception as error:
        log.warning("deploy: the outcome could not be recorded (%s)", type(error).__name__)


@bp.timer_trigger(schedule="0 */30 * * * *", arg_name="timer", run_on_startup=True)
async def deploy_on_start(timer: func.TimerRequest) -> None:
    try:
        settings = (await get_runtime()).settings
    except SettingsError as error:
        log.error("deploy: not run, the settings are invalid: %s", error)
        return
    if not settings.deploy_on_start:
        log.info("deploy: not run, DEPLOY_ON_START is false")
        return
    missing = missing_settings(settings)
    if missing:
        log.warning("deploy: not run, %s unset (nothing tells Dataverse and F&O where to send changes)",
                    " and ".join(missing))
        return
    try:
        report = await run_deploy()
    except Exception:  # a deployment problem must never take the host down; the next run retries
        log.exception("deploy: failed")
        return
    if not report.ok:
        log.warning("deploy: finished with failures %s; see the lines above", report.counts())


@bp.route(route="manage/v1/deploy", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def deploy_now(req: func.HttpRequest) -> func.HttpResponse:
    refused = roles_refusal(req)
    if refused is not None:
        return refused
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    missing = missing_settings(settings)
    if missing:
        return problem(409, "Deployment not configured", f"set {' and '.join(missing)} to deploy",
                       missing_settings=missing)
    report = await run_deploy()
    # The report either way; 502 when Dataverse or F&O refused an item, so a script can test the status.
    return json_response(report.to_json(), status=200 if report.ok else 502)
