"""Map modes: the management routes that show and move a map's mode (master key, under `manage/v1`).

  GET  manage/v1/modes                         every map: mode, since, by, why, parked records, catch-up; when
                                               the running maps were loaded, and why newer files do not run
  GET  manage/v1/modes/{map}                   one map, with its recorded transitions (newest first)
  POST manage/v1/modes/{map}/{action}          pause | resume | stop | start; body {"reason": "..."} optional
A refused move (not allowed from the map's mode) is a 409 problem naming the mode; an unknown map a 404.
"""

from __future__ import annotations

from typing import cast

import azure.functions as func

from core.ops.contracts import ModeMove
from core.sync.modes import ACTIONS, Action
from functions.http import BadParameter, answer, bad_parameter, caller, json_response, parsed
from functions.runtime import Runtime

bp = func.Blueprint()


@bp.route(route="manage/v1/modes", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def modes_list(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        # which version of the map files runs, and why a newer one on disk does not (invalid)
        return json_response({"maps": await rt.modes.views(), "maps_loaded_at": rt.maps_loaded_at,
                              "maps_problem": rt.maps_problem})

    return await answer(work, req)


@bp.route(route="manage/v1/modes/{map}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def mode_show(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["map"]

    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response({**await rt.modes.view(name), "transitions": await rt.modes.history(name)})

    return await answer(work, req)


@bp.route(route="manage/v1/modes/{map}/{action}", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def mode_move(req: func.HttpRequest) -> func.HttpResponse:
    name, action = req.route_params["map"], req.route_params["action"]
    if action not in ACTIONS:
        return bad_parameter(BadParameter("action", f"action {action!r} is not one of {', '.join(ACTIONS)}"))
    by = caller(req)
    chosen = cast("Action", action)  # checked against ACTIONS above

    async def work(rt: Runtime) -> func.HttpResponse:
        reason = parsed(ModeMove, req.get_body() or b"{}").reason  # a bad body is a 400 naming the field
        await rt.modes.act(name, chosen, by=by, reason=reason)
        return json_response(await rt.modes.view(name), status=202 if chosen == "resume" else 200)

    return await answer(work, req)
