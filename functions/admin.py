"""Management API (master key), under `manage/v1`: the error log (list, get, resubmit, discard) and the activity log.

Thin adapters: parse and check parameters (400 problem+json naming the parameter), then one core call.
Error ids are Service Bus message ids and contain `|`: callers URL-encode them (%7C) in the path.
Function names do not start with "admin", and no route starts with "admin" or "runtime": the Functions
host reserves them for its own API and refuses to load such a function (the local host checks it too).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

import azure.functions as func

from core.ops.activity import activity
from core.ops.contracts import BulkAction
from core.ops.errors import (
    BulkOutcome,
    discard,
    discard_matching,
    get_error,
    list_errors,
    resubmit,
    resubmit_matching,
)
from core.store.activity import OUTCOMES
from core.store.errors import CATEGORIES, STATUSES, ErrorEntry
from functions.http import BadParameter, answer, bad_parameter, json_response, parsed
from functions.runtime import Runtime

bp = func.Blueprint()
log = logging.getLogger(__name__)

_MAX_LIMIT = 1000
_SUMMARY_CHARS = 500


def _choice(req: func.HttpRequest, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
    value = req.params.get(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise BadParameter(name, f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _limit(req: func.HttpRequest) -> int:
    text = req.params.get("limit") or "100"
    if not text.isdigit() or not 1 <= int(text) <= _MAX_LIMIT:
        raise BadParameter("limit", f"limit={text!r} must be a whole number from 1 to {_MAX_LIMIT}")
    return int(text)


def _time(req: func.HttpRequest, name: str) -> datetime | None:
    text = req.params.get(name)
    if not text:
        return None
    # An unencoded '+' of a zone offset arrives as a space.
    candidate = text.strip().replace(" ", "+") if "T" in text else text.strip()
    try:
        value = datetime.fromisoformat(candidate.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadParameter(name, f"{name}={text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise BadParameter(name, f"{name}={text!r} has no time zone (add Z or an offset such as +01:00)")
    return value


def _error_json(entry: ErrorEntry, *, full: bool) -> dict[str, Any]:
    body = asdict(entry)
    body["first_at"], body["last_at"] = entry.first_at.isoformat(), entry.last_at.isoformat()
    body["text_length"] = len(entry.text)
    if not full:  # a list shows the start of each text; GET by id gives it whole, with the change
        body["text"] = entry.text[:_SUMMARY_CHARS]
        del body["change"]
    return body


@bp.route(route="manage/v1/errors", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def errors_list(req: func.HttpRequest) -> func.HttpResponse:
    try:
        status = _choice(req, "status", (*STATUSES, "all"), default="open")
        category = _choice(req, "category", CATEGORIES)
        limit = _limit(req)
    except BadParameter as error:
        return bad_parameter(error)

    async def work(rt: Runtime) -> func.HttpResponse:
        entries = await list_errors(rt.errors, rt.dead_letters, map=req.params.get("map") or None,
                                    status=None if status == "all" else status, category=category, limit=limit)
        return json_response({"errors": [_error_json(e, full=False) for e in entries]})

    return await answer(work, req)


def _bulk_json(verb: str, outcome: BulkOutcome) -> dict[str, Any]:
    return {verb: len(outcome.done), "ids": outcome.done,
            "failed": [{"id": id, "detail": detail} for id, detail in outcome.failed]}


@bp.route(route="manage/v1/errors/resubmit", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def errors_resubmit(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        chosen = parsed(BulkAction, req.get_body() or b"{}")
        outcome = await resubmit_matching(errors=rt.errors, dead=rt.dead_letters, queue=rt.queue, maps=rt.maps,
                                          buckets=rt.settings.apply_session_buckets, map=chosen.map,
                                          category=chosen.category, ids=chosen.ids, limit=chosen.limit)
        return json_response(_bulk_json("resubmitted", outcome), status=202)

    return await answer(work, req)


@bp.route(route="manage/v1/errors/discard", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def errors_discard(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        chosen = parsed(BulkAction, req.get_body() or b"{}")
        outcome = await discard_matching(errors=rt.errors, dead=rt.dead_letters, map=chosen.map,
                                         category=chosen.category, ids=chosen.ids, limit=chosen.limit)
        return json_response(_bulk_json("discarded", outcome))

    return await answer(work, req)


@bp.route(route="manage/v1/errors/{id}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def error_get(req: func.HttpRequest) -> func.HttpResponse:
    id = req.route_params["id"]

    async def work(rt: Runtime) -> func.HttpResponse:
        return json_response(_error_json(await get_error(id, rt.errors, rt.dead_letters), full=True))

    return await answer(work, req)


@bp.route(route="manage/v1/errors/{id}/resubmit", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def error_resubmit(req: func.HttpRequest) -> func.HttpResponse:
    id = req.route_params["id"]

    async def work(rt: Runtime) -> func.HttpResponse:
        # A refused F&O event still refused is a 400 naming the field: fix the map or the payload first.
        sent = await resubmit(id, errors=rt.errors, dead=rt.dead_letters, queue=rt.queue, maps=rt.maps,
                              buckets=rt.settings.apply_session_buckets)
        return json_response({"id": id, "status": "resubmitted", "message_id": sent.message_id,
                              "accepted": sent.accepted}, status=202)

    return await answer(work, req)


@bp.route(route="manage/v1/errors/{id}/discard", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def error_discard(req: func.HttpRequest) -> func.HttpResponse:
    id = req.route_params["id"]

    async def work(rt: Runtime) -> func.HttpResponse:
        await discard(id, errors=rt.errors, dead=rt.dead_letters)
        return json_response({"id": id, "status": "discarded"})

    return await answer(work, req)


@bp.route(route="manage/v1/activity", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def activity_query(req: func.HttpRequest) -> func.HttpResponse:
    try:
        since, until = _time(req, "since"), _time(req, "until")
        outcome = _choice(req, "outcome", OUTCOMES)
        limit = _limit(req)
    except BadParameter as error:
        return bad_parameter(error)

    async def work(rt: Runtime) -> func.HttpResponse:
        entries = await activity(rt.activity, map=req.params.get("map") or None, key=req.params.get("key") or None,
                                 since=since, until=until, outcome=outcome, limit=limit)
        return json_response({"entries": [{**asdict(e), "at": e.at.isoformat()} for e in entries]})

    return await answer(work, req)
