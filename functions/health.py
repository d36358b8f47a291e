"""GET /api/health: version and reachability of Table Storage and Service Bus (anonymous, for probes)."""

import azure.functions as func

from core.ops.health import check_health
from functions.http import json_response, settings_or_problem

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    report = await check_health(settings)
    # 200 even when degraded: the body says which dependency is down; the app itself answers.
    return json_response(report.model_dump(mode="json"))
