"""GET /api/maps: the maps this app loads, their sync order and any problem (function key).
GET /api/manage/v1/scenarios: the scenario bundles over the running maps (master key)."""

import azure.functions as func

from core.maps.overview import maps_overview
from core.maps.scenarios import ScenarioError, Scenarios, scenarios_file
from functions.http import answer, json_response, settings_or_problem
from functions.runtime import Runtime

bp = func.Blueprint()


@bp.route(route="maps", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_maps(req: func.HttpRequest) -> func.HttpResponse:
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    return json_response(maps_overview([settings.maps_path]))


@bp.route(route="manage/v1/scenarios", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def scenarios_list(req: func.HttpRequest) -> func.HttpResponse:
    """The scenario bundles (maps/scenarios/scenarios.json) over the running maps: each one's maps in initial-sync
    order, which of them are enabled. A file that does not fit the running maps is a 200 naming the problem."""

    async def work(rt: Runtime) -> func.HttpResponse:
        try:
            scenarios = Scenarios.load(scenarios_file(rt.settings.maps_path), rt.maps)
        except ScenarioError as exc:
            return json_response({"scenarios": [], "problem": str(exc)})
        return json_response({"scenarios": scenarios.view(), "problem": None})

    return await answer(work, req)
