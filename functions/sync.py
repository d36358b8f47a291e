"""Initial sync and reconciliation: the management routes that start and watch runs, and the page worker.

Routes (master key; under `manage/v1`, a prefix the Azure host accepts, unlike `admin`):
  POST manage/v1/sync/runs                 start a run (core.sync.initial.RunRequest) -> 202 with the run
  GET  manage/v1/sync/runs                 recent runs, newest first
  GET  manage/v1/sync/runs/{id}            one run: per map progress (rows read, written, matched, ...)
  POST manage/v1/sync/runs/{id}/cancel     stop starting pages (pages in flight finish)
  GET  manage/v1/sync/runs/{id}/drift      rows missing on a side, differing, failed (map, kind, limit)
The sync-pages queue trigger works one job at a time: a page of a run (pages of a map run side by side) or
a round of a map's catch-up (functions/modes.py).
"""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from core.sync.catchup import CatchUpJob
from core.sync.initial import RunRequest
from core.sync.runs import PageJob, RowOutcome
from functions.http import BadParameter, answer, bad_parameter, json_response, parsed
from functions.runtime import Runtime, get_runtime

bp = func.Blueprint()
log = logging.getLogger(__name__)
_OUTCOMES: tuple[RowOutcome, ...] = ("missing_on_target", "missing_on_source", "differs", "failed", "sample")


@bp.service_bus_queue_trigger(arg_name="message", queue_name="%SYNC_PAGES_QUEUE%", connection="SERVICEBUS_CONNECTION")
async def sync_page(message: func.ServiceBusMessage) -> None:
    body = message.get_body()
    try:
        job: PageJob | CatchUpJob = (CatchUpJob.model_validate_json(body) if b'"kind"' in body
                                     else PageJob.model_validate_json(body))
    except ValidationError as error:
        # Not ours to retry: a job we cannot read is dead-lettered by the broker after its deliveries.
        raise ValueError(f"sync-pages message {message.message_id} is not a page or catch-up job: {error}") from None
    runtime = await get_runtime()
    if isinstance(job, CatchUpJob):
        await runtime.modes.handle(job)
    else:
        await runtime.initial_sync.handle(job)


@bp.route(route="manage/v1/sync/runs", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def sync_run_start(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        request = parsed(RunRequest, req.get_body() or b"{}")  # a bad body is a 400 naming the field
        run = await rt.initial_sync.start(request, requested_by=req.headers.get("x-ms-client-principal-name"))
        return json_response(await rt.initial_sync.view(run.id), status=202,
                             headers={"Location": f"/api/manage/v1/sync/runs/{run.id}"})

    return await answer(work, req)


@bp.route(route="manage/v1/sync/runs", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def sync_runs(req: func.HttpRequest) -> func.HttpResponse:
    text = req.params.get("limit") or "20"
    if not text.isdigit() or not 1 <= int(text) <= 200:
        return bad_parameter(BadParameter("limit", f"limit={text!r} must be a whole number from 1 to 200"))

    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response({"runs": await rt.initial_sync.recent(int(text))})

    return await answer(work, req)


@bp.route(route="manage/v1/sync/runs/{id}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def sync_run(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response(await rt.initial_sync.view(req.route_params["id"]))

    return await answer(work, req)


@bp.route(route="manage/v1/sync/runs/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def sync_run_cancel(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        run = await rt.initial_sync.cancel(req.route_params["id"])
        return json_response(await rt.initial_sync.view(run.id))

    return await answer(work, req)


@bp.route(route="manage/v1/sync/runs/{id}/drift", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def sync_run_drift(req: func.HttpRequest) -> func.HttpResponse:
    kind = req.params.get("kind") or None
    if kind is not None and kind not in _OUTCOMES:
        return bad_parameter(BadParameter("kind", f"kind={kind!r} is not one of {', '.join(_OUTCOMES)}"))
    text = req.params.get("limit") or "1000"
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        return bad_parameter(BadParameter("limit", f"limit={text!r} must be a whole number from 1 to 10000"))

    async def work(rt: Runtime) -> func.HttpResponse:
        items = await rt.initial_sync.drift(req.route_params["id"], map_name=req.params.get("map") or None,
                                            outcome=kind, limit=int(text))
        return json_response({"items": items})

    return await answer(work, req)
