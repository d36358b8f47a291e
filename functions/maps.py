"""GET /api/maps: the maps this app loads, their sync order and any problem (function key)."""

import azure.functions as func

from core.maps.overview import maps_overview
from core.settings import SettingsError, get_settings
from functions.http import json_response, problem

bp = func.Blueprint()


@bp.route(route="maps", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_maps(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = get_settings()
    except SettingsError as exc:
        return problem(500, "Invalid settings", str(exc), invalid_settings=sorted(exc.problems))
    return json_response(maps_overview([settings.maps_path]))
