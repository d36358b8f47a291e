"""HTTP answers shared by the entry points: JSON bodies and RFC 9457 problem+json errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError

from core.settings import Settings, SettingsError, get_settings
from functions.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json", headers=headers
    )


def settings_or_problem() -> Settings | func.HttpResponse:
    """The app's settings, or the 500 problem+json naming every bad setting (never their values)."""
    try:
        return get_settings()
    except SettingsError as exc:
        return problem(500, "Invalid settings", str(exc), invalid_settings=sorted(exc.problems))


def problem(status: int, title: str, detail: str, **extra: Any) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/problem+json")


class BadParameter(ValueError):
    """A request parameter or body field that is wrong; `name` says which."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        super().__init__(detail)


def caller(req: func.HttpRequest) -> str:
    """Who is asking, as recorded with what they change: App Service authentication's principal, else the
    caller's own `x-dualwrite-user` header, else "api"."""
    return req.headers.get("x-ms-client-principal-name") or req.headers.get("x-dualwrite-user") or "api"


def bad_parameter(error: BadParameter) -> func.HttpResponse:
    return problem(400, "Bad parameter", str(error), invalid_params=[{"name": error.name, "reason": str(error)}])


async def answer(work: Callable[[Runtime], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run `work` with the runtime: bad settings are a 500 naming them, an unreachable or failing Table
    Storage / Service Bus a 503 (worth retrying), never a crash."""
    settings = settings_or_problem()
    if isinstance(settings, func.HttpResponse):
        return settings
    try:
        # the first call reads the stored map revisions, so it can meet an unreachable Table Storage too
        rt = await get_runtime()
        return await work(rt)
    except AzureError as exc:
        log.warning("management call failed on a dependency: %s", type(exc).__name__, exc_info=True)
        first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
        return problem(503, "Dependency unavailable", f"Table Storage or Service Bus failed: {type(exc).__name__}: "
                       f"{first_line}")
