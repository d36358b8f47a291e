"""GET /api/maps: the maps this app loads, their sync order and any problem (function key)."""

import azure.functions as func

from core.maps.overview import maps_overview
from functions.http import json_response, settings_or_problem

bp = func.Blueprint()


@bp.route(route="maps", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_maps(req: func.HttpRequest) -> func.HttpResponse:
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    return json_response(maps_overview([settings.maps_path]))
