"""The OData v4 service of the virtual tables, read by Dataverse's OData v4 Data Provider (core/virtual).

  GET    odata/                   service document
  GET    odata/$metadata          CSDL
  GET    odata/<Set>[?$select,$filter,$orderby,$top,$skip,$skiptoken,$count]
  GET    odata/<Set>/$count
  POST   odata/<Set>
  GET|PATCH|DELETE odata/<Set>(<guid>)

One catch-all route, because a route template cannot hold `$metadata` or `Set(<guid>)`; anonymous to the Functions
host, because the data source can only send a header or query parameter it is configured with: the service checks
its own key (VIRTUAL_TABLES_KEY) in core.virtual.service.

And a timer, every minute: tables whose definition has `notify` are polled for changes made at the source and
Dataverse is told (OnExternalCreated / OnExternalUpdated, core.virtual.notify); without such tables it does nothing.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

import azure.functions as func

from core.settings import SettingsError, get_settings
from core.virtual.catalog import DefinitionError
from core.virtual.service import Reply, Request, VirtualService, problem

bp = func.Blueprint()
log = logging.getLogger(__name__)
_service: VirtualService | None = None
_notifier: Any = None


def service() -> VirtualService:
    global _service
    if _service is None:
        from core.virtual.app import build_service
        from functions.runtime import close_on_stop

        _service = build_service(get_settings())
        close_on_stop("virtual table service", _close)
    return _service


async def _close() -> None:
    """The service's clients and the notifier's (the local host's stop; in Azure the process ends with them)."""
    global _service, _notifier
    service_, notifier = _service, _notifier
    _service = _notifier = None
    if notifier is not None:
        await notifier.aclose()
    if service_ is not None:
        await service_.aclose()


def _base_url(url: str) -> str:
    """The service root as the caller reached it (links in answers point back through the same host)."""
    parts = urlsplit(url)
    at = parts.path.lower().find("/odata")
    return f"{parts.scheme}://{parts.netloc}{parts.path[:at]}/odata/"


def _response(reply: Reply) -> func.HttpResponse:
    headers = dict(reply.headers)
    if reply.content_type:
        headers["Content-Type"] = reply.content_type
    return func.HttpResponse(reply.body, status_code=reply.status, headers=headers)


@bp.route(route="odata/{*path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
async def odata(req: func.HttpRequest) -> func.HttpResponse:
    try:
        svc = service()
    except SettingsError as error:
        return _response(problem(500, "Invalid settings", str(error), invalid_settings=sorted(error.problems)))
    except DefinitionError as error:
        log.error("virtual table definitions cannot be loaded: %s", error)
        return _response(problem(500, "Invalid virtual table definitions", str(error), problems=error.problems))
    request = Request(
        method=req.method or "GET",
        path=unquote(req.route_params.get("path") or ""),
        base_url=_base_url(req.url),
        params=dict(req.params),
        headers={k.lower(): v for k, v in req.headers.items()},
        body=req.get_body() or b"",
    )
    return _response(await svc.serve(request))


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
async def vt_notify(timer: func.TimerRequest) -> None:
    global _notifier
    try:
        svc = service()
    except (SettingsError, DefinitionError) as error:
        log.warning("virtual table notifications skipped: %s", error)
        return
    if not any(t.notify is not None for t in svc.tables.values()):
        return
    if _notifier is None:
        from core.virtual.app import Notifier

        _notifier = Notifier(get_settings(), svc)
    await _notifier.run()
