"""Alert rules, alerts and their history (master key, under `manage/v1`), and the evaluation timer.

  GET    manage/v1/alerts                   every alert (rule + subject) with its state: firing or ok
  GET    manage/v1/alerts/history           firings and resolutions, newest first (?limit=100&rule=NAME)
  POST   manage/v1/alerts/evaluate          evaluate every rule now (the timer does it every minute)
  GET    manage/v1/alerts/rules             the rules (the shipped defaults are put in the first time)
  GET    manage/v1/alerts/rules/{name}      one rule; its ETag
  PUT    manage/v1/alerts/rules/{name}      create or replace a rule (If-Match: its ETag, optional); the next
                                            evaluation uses it, on every instance, without a restart
  DELETE manage/v1/alerts/rules/{name}      delete a rule (its firing alerts resolve at the next evaluation)
The evaluation runs on every instance's timer; an alert's change of state is written with its etag, so one
instance acts on it (history, notification, pause) and the others see it done.
"""

from __future__ import annotations

import logging

import azure.functions as func

from core.settings import SettingsError
from core.store.alerts import RuleChanged, RuleNotFound
from functions.http import BadParameter, answer, json_response, parsed_json, problem
from functions.runtime import Runtime, get_runtime

log = logging.getLogger("functions.alerts")
bp = func.Blueprint()


def _not_found(name: str) -> func.HttpResponse:
    return problem(404, "Rule not found", f"no alert rule named {name!r}", rule=name)


def _limit(req: func.HttpRequest) -> int:
    text = req.params.get("limit") or "100"
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise BadParameter("limit", f"limit {text!r} must be a whole number from 1 to 1000")
    return int(text)


@bp.route(route="manage/v1/alerts", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def alerts_now(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        states = sorted(await rt.alerts.store.states(), key=lambda s: (s.state != "firing", s.rule, s.subject))
        return json_response({"alerts": [s.model_dump(mode="json") for s in states]})

    return await answer(work, req)


@bp.route(route="manage/v1/alerts/history", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def alerts_history(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        entries = await rt.alerts.store.history(limit=_limit(req), rule=req.params.get("rule") or None)
        return json_response({"entries": [e.model_dump(mode="json") for e in entries]})

    return await answer(work, req)


@bp.route(route="manage/v1/alerts/evaluate", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def alerts_evaluate(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response((await rt.alerts.evaluate()).model_dump(mode="json"))

    return await answer(work, req)


@bp.route(route="manage/v1/alerts/rules", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def alert_rules(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response({"rules": [r.model_dump(mode="json") for r in await rt.alerts.rules()]})

    return await answer(work, req)


@bp.route(route="manage/v1/alerts/rules/{name}", methods=["GET", "PUT", "DELETE"], auth_level=func.AuthLevel.ADMIN)
async def alert_rule(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")

    async def work(rt: Runtime) -> func.HttpResponse:
        method = (req.method or "GET").upper()
        try:
            if method == "GET":
                await rt.alerts.rules()  # the shipped rules exist once anyone has looked
                rule, etag = await rt.alerts.store.rule(name)
                return json_response(rule.model_dump(mode="json"), headers={"ETag": etag})
            if method == "DELETE":
                await rt.alerts.store.delete_rule(name)
                return func.HttpResponse(status_code=204)
            if_match = (req.headers.get("if-match") or "").strip() or None
            rule, etag, created = await rt.alerts.put_rule(name, parsed_json(req.get_body()), if_match=if_match)
            return json_response(rule.model_dump(mode="json"), status=201 if created else 200, headers={"ETag": etag})
        except RuleNotFound:
            return _not_found(name)
        except RuleChanged:
            return problem(412, "Rule changed", f"rule {name!r} changed since the ETag in If-Match was read",
                           rule=name)

    return await answer(work, req)


@bp.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False)
async def alerts_timer(timer: func.TimerRequest) -> None:
    """Every minute: evaluate the rules, and write out this instance's counts first (its newest minute)."""
    try:
        rt = await get_runtime()
    except SettingsError as error:
        log.error("alerts: not evaluated, the settings are invalid: %s", error)
        return
    try:
        if rt.meter is not None:
            await rt.meter.flush()
        report = await rt.alerts.evaluate()
        if report.fired or report.resolved:
            log.info("alerts: %d fired, %d resolved", len(report.fired), len(report.resolved))
        if report.at.minute == 0:  # hourly: the per-minute counts older than a day go
            await rt.metric_store.prune()
    except Exception:  # the next minute tries again; an evaluation must never take the host down
        log.exception("alerts: evaluation failed")
