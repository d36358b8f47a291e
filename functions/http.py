"""HTTP answers shared by the entry points: JSON bodies and RFC 9457 problem+json errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import azure.functions as func
from azure.core.exceptions import AzureError
from pydantic import BaseModel, ValidationError

from core.connectors import jsonwire
from core.errors import BadInput
from core.events.errors import PayloadError
from core.maps import MapDefinitionError, ProjectionError
from core.ops.errors import ErrorNotOpen, NotResubmittable
from core.ops.mapversions import RevisionNotFound, StaleRevision
from core.ops.principal import HEADER as PRINCIPAL_HEADER
from core.ops.principal import principal_roles
from core.settings import Settings, SettingsError, get_settings
from core.store.errors import ErrorNotFound
from core.store.mapversions import BodyTooLarge, RevisionTaken
from core.sync.catchup import UnknownMap
from core.sync.initial import RunNotFound
from core.sync.modes import ModeRefused
from core.sync.runs import RunStateError
from functions.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def _wire(value: Any) -> Any:
    """JSON for what json cannot write: datetimes as ISO 8601 (`T`, offset), anything else as its text."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=_wire), status_code=status, mimetype="application/json", headers=headers
    )


def settings_or_problem() -> Settings | func.HttpResponse:
    """The app's settings, or the 500 problem+json naming every bad setting (never their values)."""
    try:
        return get_settings()
    except SettingsError as exc:
        return problem(500, "Invalid settings", str(exc), invalid_settings=sorted(exc.problems))


def problem(status: int, title: str, detail: str, **extra: Any) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return func.HttpResponse(json.dumps(body, default=_wire), status_code=status, mimetype="application/problem+json")


BadParameter = BadInput  # the entry points' name for it: a request parameter, body field or header that is wrong


def caller(req: func.HttpRequest) -> str:
    """Who is asking, as recorded with what they change: App Service authentication's principal, else the
    caller's own `x-dualwrite-user` header, else "api"."""
    return req.headers.get("x-ms-client-principal-name") or req.headers.get("x-dualwrite-user") or "api"


def bad_parameter(error: BadInput) -> func.HttpResponse:
    return problem(400, "Bad parameter", str(error), invalid_params=[{"name": error.field, "reason": str(error)}])


def parsed_json(body: bytes) -> Any:
    """A JSON body (numbers with a fraction as Decimal); BadInput naming the body when it is not JSON."""
    try:
        return jsonwire.loads(body)
    except ValueError as error:
        raise BadInput("body", f"the body is not JSON: {error}") from None


def parsed(model: type[M], body: bytes) -> M:
    """A JSON body as `model`; BadInput naming the first wrong field."""
    try:
        return model.model_validate(parsed_json(body))
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadInput(name, f"{name}: {first['msg']}") from None


def _invalid_maps(error: MapDefinitionError) -> func.HttpResponse:
    problems = [{"map": p.map, "field": p.field, "message": p.message, "origin": p.file} for p in error.problems]
    return problem(422, "Invalid map", f"the maps with this change would not pass validation ({len(problems)} "
                   "problem(s)); nothing was stored and the running maps stay", problems=problems)


# The one mapping from what the core raises to the problem a caller gets: every management route answers
# through `answer`, so a core exception means the same status and title wherever it comes from.
PROBLEMS: tuple[tuple[type[Exception], Callable[[Any], func.HttpResponse]], ...] = (
    (BadInput, bad_parameter),
    (PayloadError, lambda e: problem(400, "Invalid payload", str(e), field=e.field)),
    (BodyTooLarge, lambda e: problem(413, "Map too large", str(e), field="body")),
    (ErrorNotFound, lambda e: problem(404, "Not found", str(e))),
    (UnknownMap, lambda e: problem(404, "Map not found", str(e), map=e.map)),
    (RevisionNotFound, lambda e: problem(404, "Revision not found", str(e), map=e.map, revision=e.revision)),
    (RunNotFound, lambda e: problem(404, "Run not found", str(e), run=e.run_id)),
    (ErrorNotOpen, lambda e: problem(409, "Not open", str(e), status_now=e.status)),
    (ModeRefused, lambda e: problem(409, "Move not allowed", str(e), map=e.map, mode=e.mode, action=e.action)),
    (RunStateError, lambda e: problem(409, "Run not cancellable", str(e))),
    (StaleRevision, lambda e: problem(409, "Revision changed", str(e), map=e.map, latest_revision=e.latest)),
    (RevisionTaken, lambda e: problem(409, "Revision changed", str(e), map=e.map, latest_revision=e.revision)),
    (NotResubmittable, lambda e: problem(422, "Cannot resubmit", str(e))),
    (MapDefinitionError, _invalid_maps),
    (ProjectionError, lambda e: problem(422, "Cannot project", str(e), map=e.map_name, field=e.field)),
)


def problem_for(error: Exception) -> func.HttpResponse | None:
    """The problem answer for a core exception, None for one that is not the caller's to fix (a bug: 500)."""
    for kind, render in PROBLEMS:
        if isinstance(error, kind):
            return render(error)
    return None


OPERATOR_ROLE, READER_ROLE = "DualWrite.Operator", "DualWrite.Reader"


def roles_refusal(req: func.HttpRequest) -> func.HttpResponse | None:
    """In Azure, App Service authentication (Entra ID) passes the signed-in caller as `x-ms-client-principal` and
    strips any such header a client sends: operators may call every management route, readers the GETs. Without
    the header (the local stack, no authentication in front) the master key alone decides."""
    header = req.headers.get(PRINCIPAL_HEADER)
    if not header:
        return None
    try:
        roles = principal_roles(header)
    except ValueError as error:
        return problem(401, "Unauthenticated", str(error))
    reading = (req.method or "").upper() == "GET"
    if OPERATOR_ROLE in roles or (reading and READER_ROLE in roles):
        return None
    needed = f"{OPERATOR_ROLE} or {READER_ROLE}" if reading else OPERATOR_ROLE
    return problem(403, "Forbidden", f"this call needs the app role {needed}", roles=sorted(roles))


async def runtime_or_problem() -> Runtime | func.HttpResponse:
    """The runtime with its maps loaded, or the problem to answer a sender with: 500 for bad settings or maps (no
    retry helps), 503 while the stored map revisions cannot be read (Dataverse and F&O send again on a 503)."""
    try:
        rt = await get_runtime()
        rt.maps  # noqa: B018 - loaded here, so a failure is answered here
    except SettingsError as error:
        return problem(500, "Invalid settings", str(error), invalid_settings=sorted(error.problems))
    except MapDefinitionError as error:
        log.error("maps cannot be loaded: %s", error)
        return problem(500, "Invalid maps", str(error))
    except AzureError as error:
        log.warning("maps cannot be loaded, Table Storage failed: %s", type(error).__name__)
        return problem(503, "Dependency unavailable", "the stored map revisions cannot be read from Table Storage "
                       f"({type(error).__name__}); nothing was taken, send it again later")
    return rt


async def answer(work: Callable[[Runtime], Awaitable[func.HttpResponse]],
                 req: func.HttpRequest | None = None) -> func.HttpResponse:
    """Run `work` with the runtime, for a caller `req`'s app roles allow (roles_refusal): bad settings are a 500
    naming them, a core exception the problem PROBLEMS
    maps it to, an unreachable or failing Table Storage / Service Bus a 503 (worth retrying), never a crash."""
    refused = roles_refusal(req) if req is not None else None
    if refused is not None:
        return refused
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    try:
        # Inside: the first call loads the stored map revisions, so an unreachable Table Storage shows here too.
        return await work(await get_runtime())
    except AzureError as exc:
        log.warning("management call failed on a dependency: %s", type(exc).__name__, exc_info=True)
        first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
        return problem(503, "Dependency unavailable", f"Table Storage or Service Bus failed: {type(exc).__name__}: "
                       f"{first_line}")
    except Exception as exc:
        answered = problem_for(exc)
        if answered is None:
            raise
        return answered
