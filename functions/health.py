"""GET /api/health: version and reachability of Table Storage and Service Bus (anonymous, for probes).
GET /api/manage/v1/health: each map's mode, parked changes, open errors, applied and failed changes over the
last 10 minutes, and their lag (source change -> target write) p50/p95 (master key)."""

import azure.functions as func

from core.ops.health import check_health
from core.ops.maphealth import maps_health
from functions.http import answer, json_response, settings_or_problem
from functions.runtime import Runtime

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    report = await check_health(settings)
    # 200 even when degraded: the body says which dependency is down; the app itself answers.
    return json_response(report.model_dump(mode="json"))


@bp.route(route="manage/v1/health", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def maps_health_now(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        report = await maps_health(rt.maps, modes=rt.modes, activity=rt.activity, errors=rt.errors)
        return json_response(report.model_dump(mode="json"))

    return await answer(work, req)
