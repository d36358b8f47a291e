"""The engine's figures per map and direction over a window (master key, under `manage/v1`).

  GET manage/v1/metrics?window_minutes=15             JSON (core.ops.metrics.Metrics)
  GET manage/v1/metrics/prometheus?window_minutes=15  the same figures in Prometheus's text format, with the
                                                      alerts firing now (a scrape target: send the function key)
"""

from __future__ import annotations

from datetime import timedelta

import azure.functions as func

from core.ops.metrics import DEFAULT_WINDOW, MAX_WINDOW, prometheus_text
from functions.http import BadParameter, answer, json_response
from functions.runtime import Runtime

bp = func.Blueprint()


def window_of(req: func.HttpRequest) -> timedelta:
    text = req.params.get("window_minutes")
    if text is None or text == "":
        return DEFAULT_WINDOW
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not 1 <= minutes <= MAX_WINDOW.total_seconds() / 60:  # counted per minute: less says nothing
        raise BadParameter("window_minutes", f"window_minutes {text!r} must be a number of minutes from 1 to "
                           f"{MAX_WINDOW.total_seconds() / 60:g}")
    return timedelta(minutes=minutes)


@bp.route(route="manage/v1/metrics", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def metrics_now(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response((await rt.metrics(window_of(req))).model_dump(mode="json"))

    return await answer(work, req)


@bp.route(route="manage/v1/metrics/prometheus", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def metrics_prometheus(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        figures = await rt.metrics(window_of(req))
        firing = [(s.rule, s.subject, s.state == "firing") for s in await rt.alerts.store.states()]
        return func.HttpResponse(prometheus_text(figures, firing), status_code=200,
                                 mimetype="text/plain", headers={"Content-Type": "text/plain; version=0.0.4"})

    return await answer(work, req)
