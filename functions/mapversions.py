"""Maps changed through the management API (master key, under `manage/v1`), stored with a revision number.

  GET  manage/v1/maps                                     the running maps: version, revision (null: a file),
                                                          origin, enabled; when loaded, why newer maps do not run
  GET  manage/v1/maps/{map}                               the running definition, its revision and origin
  PUT  manage/v1/maps/{map}                               body: the map's JSON; stored as the next revision once
                                                          the whole set with it is valid (422 naming each problem)
  POST manage/v1/maps/{map}/validate                      body: a draft; every problem of the set with it (200,
                                                          `valid`), nothing stored
  POST manage/v1/maps/{map}/preview                       body: {direction, record, definition?}: the values the map
                                                          (or the draft) would write for that record
  GET  manage/v1/maps/{map}/versions                      the stored revisions, newest first, without bodies
  GET  manage/v1/maps/{map}/versions/{revision}           one revision with its body
  POST manage/v1/maps/{map}/versions/{revision}/restore   store that revision's body again as the next revision
A PUT or restore takes `If-Match: "<revision>"` (the latest revision the caller saw; "0" when none is stored; a
stale one is a 409) and a reason (`x-dualwrite-reason` header or `?reason=`). The latest stored revision of a
map beats its file. The instance that stored it runs it at once, the others within MAPS_CHECK_SECONDS.
Numbers in maps keep every digit both ways (core.connectors.jsonwire): a definition read and sent back is equal.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func

from core.connectors import jsonwire
from core.maps import LoadedMap
from core.ops.contracts import PreviewRequest
from core.ops.mapversions import preview
from core.store.mapversions import MAX_UNITS, MapRevision
from functions.http import BadParameter, answer, bad_parameter, caller, parsed, problem
from functions.runtime import MAPS_CHECK_SECONDS, Runtime, refresh_maps

bp = func.Blueprint()
_IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,10})"?$')


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    # jsonwire, not json.dumps: a map's decimals go out as the numbers they are, not as floats or strings
    return func.HttpResponse(jsonwire.dumps(body), status_code=status, mimetype="application/json", headers=headers)


def _etag(revision: int | None) -> dict[str, str]:
    """The map's latest revision as its ETag, what If-Match sends back ("0": none stored yet)."""
    return {"ETag": f'"{revision or 0}"'}


def _summary(loaded: LoadedMap) -> dict[str, Any]:
    table_map = loaded.map
    return {"name": table_map.name, "title": table_map.title, "version": table_map.version,
            "revision": loaded.revision, "origin": loaded.file, "enabled": table_map.enabled}


def _revision_json(revision: MapRevision) -> dict[str, Any]:
    out: dict[str, Any] = {"map": revision.map, "revision": revision.revision, "version": revision.version,
                           "by": revision.by, "at": revision.at, "reason": revision.reason}
    if revision.body is not None:
        out["body"] = jsonwire.loads(revision.body)
    return out


def _not_running(name: str) -> func.HttpResponse:
    return problem(404, "Map not found", f"no running map named {name!r} and no stored revision of it", map=name)


def _revision_number(req: func.HttpRequest) -> int:
    text = req.route_params.get("revision", "")
    if not text.isdigit() or not 1 <= int(text) < 10**10:
        raise BadParameter("revision", f"revision {text!r} must be a whole number from 1")
    return int(text)


def _expected(req: func.HttpRequest) -> int | None:
    """The revision If-Match names; None without one (or `*`): the change goes on top of whatever is latest."""
    text = (req.headers.get("if-match") or "").strip()
    if not text or text == "*":
        return None
    found = _IF_MATCH.match(text)
    if found is None:
        raise BadParameter("If-Match", f'If-Match {text!r} must be a revision number in quotes, e.g. "3" ("0": '
                                       "no stored revision yet)")
    return int(found.group(1))


def _reason(req: func.HttpRequest) -> str:
    return (req.headers.get("x-dualwrite-reason") or req.params.get("reason") or "").strip()


@bp.route(route="manage/v1/maps", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def maps_running(req: func.HttpRequest) -> func.HttpResponse:
    async def work(rt: Runtime) -> func.HttpResponse:
        maps = rt.maps
        return _json({"maps": [_summary(maps.loaded(name)) for name in maps], "loaded_at": rt.maps_loaded_at,
                      "maps_problem": rt.maps_problem})

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def map_show(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["map"]

    async def work(rt: Runtime) -> func.HttpResponse:
        if name not in rt.maps:
            return _not_running(name)
        loaded = rt.maps.loaded(name)
        # What runs, as the model holds it (the fields the author set): sent back as is, it is the same map.
        definition = loaded.map.model_dump(mode="python", by_alias=True, exclude_unset=True)
        latest = await rt.map_versions.store.latest(name)
        return _json({**_summary(loaded), "latest_revision": latest or None,
                      "loaded_at": rt.maps_loaded_at, "definition": definition}, headers=_etag(latest))

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}", methods=["PUT"], auth_level=func.AuthLevel.ADMIN)
async def map_put(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["map"]
    body = req.get_body() or b""
    if len(body) > 3 * MAX_UNITS:  # even at 3 bytes a character it is longer than a row holds
        return problem(413, "Map too large", f"the body has {len(body):,} bytes; a stored map holds at most "
                       f"{MAX_UNITS:,} characters", field="body")
    try:
        text = body.decode("utf-8-sig")
        expected = _expected(req)
    except UnicodeDecodeError:
        return bad_parameter(BadParameter("body", "the body is not UTF-8 text"))
    except BadParameter as error:
        return bad_parameter(error)
    by, reason = caller(req), _reason(req)

    async def work(rt: Runtime) -> func.HttpResponse:
        return await _store(rt, name, lambda: rt.map_versions.change(name, text, by=by, reason=reason,
                                                                      expected=expected))

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}/validate", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def map_validate(req: func.HttpRequest) -> func.HttpResponse:
    """A draft checked as a PUT would check it, storing nothing: what an editor asks as the user types."""
    name = req.route_params["map"]
    try:
        text = (req.get_body() or b"").decode("utf-8-sig")
    except UnicodeDecodeError:
        return bad_parameter(BadParameter("body", "the body is not UTF-8 text"))

    async def work(rt: Runtime) -> func.HttpResponse:
        found = await rt.map_versions.check(name, text)
        problems = [{"map": p.map, "field": p.field, "severity": p.severity, "message": p.message,
                     "origin": p.file} for p in found]
        return _json({"map": name, "valid": not any(p["severity"] == "error" for p in problems),
                      "problems": problems})

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}/preview", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def map_preview(req: func.HttpRequest) -> func.HttpResponse:
    """What a map (or a draft of it) would write for a sample record: nothing is read or written."""
    name = req.route_params["map"]

    async def work(rt: Runtime) -> func.HttpResponse:
        asked = parsed(PreviewRequest, req.get_body() or b"{}")  # numbers as Decimal: money previews exact
        if asked.definition is not None and asked.definition.name != name:
            raise BadParameter("definition.name", f"the draft is map {asked.definition.name!r}, not {name!r}")
        values = preview(rt.maps, name, asked.direction, asked.record, asked.definition)
        return _json({"map": name, "direction": asked.direction, "values": values})

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}/versions", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def map_versions(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["map"]

    async def work(rt: Runtime) -> func.HttpResponse:
        history = await rt.map_versions.history(name)
        if not history and name not in rt.maps:
            return _not_running(name)
        running = rt.maps.loaded(name) if name in rt.maps else None
        return _json({"map": name, "running_revision": running.revision if running else None,
                      "origin": running.file if running else None,
                      "versions": [_revision_json(each) for each in history]})

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}/versions/{revision}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def map_version(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["map"]
    try:
        number = _revision_number(req)
    except BadParameter as error:
        return bad_parameter(error)

    async def work(rt: Runtime) -> func.HttpResponse:
        return _json(_revision_json(await rt.map_versions.revision(name, number)))

    return await answer(work, req)


@bp.route(route="manage/v1/maps/{map}/versions/{revision}/restore", methods=["POST"],
          auth_level=func.AuthLevel.ADMIN)
async def map_restore(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params["map"]
    try:
        number = _revision_number(req)
        expected = _expected(req)
    except BadParameter as error:
        return bad_parameter(error)
    by, reason = caller(req), _reason(req)

    async def work(rt: Runtime) -> func.HttpResponse:
        return await _store(rt, name, lambda: rt.map_versions.restore(name, number, by=by, reason=reason,
                                                                       expected=expected))

    return await answer(work, req)


async def _store(rt: Runtime, name: str, store: Callable[[], Awaitable[MapRevision]]) -> func.HttpResponse:
    """Run a change (PUT or restore), answer what was stored, and run it here at once; a refusal is a problem."""
    stored = await store()  # a refusal is the problem functions.http maps it to
    await refresh_maps(rt)  # this instance runs it from the next invocation; the others within the check interval
    return _json({"map": name, "revision": stored.revision, "version": stored.version, "by": stored.by,
                  "at": stored.at, "reason": stored.reason, "takes_effect_within_seconds": int(MAPS_CHECK_SECONDS),
                  "maps_problem": rt.maps_problem}, status=201,
                 headers={**_etag(stored.revision),
                          "Location": f"/api/manage/v1/maps/{name}/versions/{stored.revision}"})
