"""The ASGI app: OData at /data/, the simulator's admin API at /admin/, a health probe at /."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack import disconnects
from devstack.fno import batch, events, load, wire
from devstack.fno.auth import Caller, caller_from_header
from devstack.fno.delivery import Dispatcher, EndpointError
from devstack.fno.errors import ODataError
from devstack.fno.odata import Call, ODataHandler, Reply, error_reply
from devstack.fno.schema import Entity, load_schema
from devstack.fno.seed import SEED_CALLER, seed
from devstack.fno.service import MAX_PAGE, Change, Service
from devstack.fno.stats import BatchCountingHandler, Outage, Stats, outage_request
from devstack.fno.storage import Storage
from devstack.fno.throttle import Throttle

log = logging.getLogger("devstack.fno")


@dataclass
class Settings:
    db: str = ":memory:"
    seed: bool = True
    default_company: str = "usmf"
    max_concurrent: int = 52
    rate_limit: int = 0
    rate_window: float = 300.0
    page_size: int = MAX_PAGE
    event_retries: int = 3
    event_retry_delay: float = 1.0
    ca_file: str | None = None


class Simulator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = load_schema()
        self.storage = Storage(settings.db)
        self.dispatcher = Dispatcher(self.schema, self.storage, retries=settings.event_retries,
                                     retry_delay=settings.event_retry_delay, ca_file=settings.ca_file)
        self.stats = Stats()
        self.outage = Outage()
        self.service = Service(self.schema, self.storage, settings.default_company,
                               on_commit=self._committed, max_page=min(settings.page_size, MAX_PAGE))
        self.odata = ODataHandler(self.service)
        self.batch_odata = BatchCountingHandler(self.service, self.stats)
        self.throttle = Throttle(settings.max_concurrent, settings.rate_limit, settings.rate_window)
        if settings.seed:
            seed(self.service)

    def _committed(self, changes: list[Change]) -> None:
        self.stats.committed(changes)
        self.dispatcher.publish(changes)

    # ---- /data --------------------------------------------------------------------------------------
    async def data(self, request: Request) -> Response:
        """The OData door with the simulator's tap: an outage answers 503 first; every request is counted."""
        path = request.url.path
        target = path.split("/data", 1)[1].lstrip("/") if "/data" in path else ""
        caller: Caller | None = None
        if self.outage.active():
            response = _response(error_reply(self.outage.error()))
        else:
            try:
                caller = caller_from_header(request.headers.get("authorization"))
            except ODataError as err:
                response = _response(error_reply(err))
            else:
                response = await self._data(request, caller)
        if caller is None:
            with contextlib.suppress(ODataError):
                caller = caller_from_header(request.headers.get("authorization"))
        self.stats.request(request.method, target, response.status_code,
                           str(caller.object_id) if caller else "anonymous")
        return response

    async def _data(self, request: Request, caller: Caller) -> Response:
        try:
            self.throttle.enter(caller.id)
        except ODataError as err:
            return _response(error_reply(err))
        try:
            body = await request.body()
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            path = raw_path.decode("latin-1")
            target = path.split("/data", 1)[1].lstrip("/") if "/data" in path else ""
            base_url = f"{request.url.scheme}://{request.url.netloc}/data/"
            headers = {k.lower(): v for k, v in request.headers.items()}
            query = request.scope.get("query_string", b"").decode("latin-1")
            if target == "$batch":
                if request.method != "POST":
                    return _response(error_reply(ODataError(405, "$batch accepts POST only.")))
                reply = batch.execute(self.batch_odata, body, headers.get("content-type", ""), caller, base_url)
            else:
                reply = self.odata.handle(Call(request.method, target, query, headers, body, base_url), caller)
            return _response(reply)
        except ClientDisconnect:
            raise  # not a bug of ours: one line (devstack.disconnects)
        except Exception as exc:  # a bug of ours still answers in the OData error shape
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            failure = ODataError(500, "An error has occurred.", inner=f"{type(exc).__name__}: {exc}")
            return _response(error_reply(failure))
        finally:
            self.throttle.leave(caller.id)

    # ---- /admin ---------------------------------------------------------------------------------------
    async def admin_catalog(self, request: Request) -> Response:
        return JSONResponse(events.catalog(self.schema))

    async def admin_endpoints(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([{"name": n, **_redact(c)} for n, c in self.storage.endpoints().items()])
        body = await _json(request)
        try:
            config = self.dispatcher.put_endpoint(str(body.get("name") or ""), body)
        except EndpointError as exc:
            return _problem(400, str(exc))
        return JSONResponse({"name": body["name"], **_redact(config)}, status_code=201)

    async def admin_endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self.dispatcher.delete_endpoint(name):
            return _problem(404, f"The endpoint '{name}' does not exist.")
        return Response(status_code=204)

    async def admin_activations(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.storage.activations())
        body = await _json(request)
        caller = _optional_caller(request)
        try:
            activation = await self.dispatcher.activate(
                str(body.get("eventId") or ""), str(body.get("legalEntity") or ""), str(body.get("endpoint") or ""),
                caller.object_id,
            )
        except EndpointError as exc:
            return _problem(400, str(exc))
        return JSONResponse(activation, status_code=201)

    async def admin_activation(self, request: Request) -> Response:
        activation_id = int(request.path_params["id"])
        if request.method == "DELETE":
            found = self.dispatcher.deactivate(activation_id)
        else:
            body = await _json(request)
            if not isinstance(body.get("active"), bool):
                return _problem(400, "Send {\"active\": true|false} to activate or inactivate.")
            found = self.dispatcher.set_active(activation_id, body["active"])
        return Response(status_code=204) if found else _problem(404, f"No activation {activation_id}.")

    async def admin_errors(self, request: Request) -> Response:
        return JSONResponse(self.storage.errors())

    async def admin_resend(self, request: Request) -> Response:
        ids = [e["id"] for e in self.storage.errors()]
        if "id" in request.path_params:
            ids = [int(request.path_params["id"])]
        resent = [i for i in ids if self.dispatcher.resend(i)]
        if "id" in request.path_params and not resent:
            return _problem(404, f"No error {ids[0]} in the errors list.")
        return JSONResponse({"resent": resent})

    async def admin_drain(self, request: Request) -> Response:
        await self.dispatcher.drain()
        return JSONResponse({"delivered": self.dispatcher.delivered, "errors": len(self.storage.errors())})

    async def admin_bulk_update(self, request: Request) -> Response:
        body = await _json(request)
        entity = self._entity(body)
        values = body.get("set")
        if not isinstance(values, dict) or not values:
            return _problem(400, "'set' must be an object of field values.")
        try:
            count = self.service.bulk_update(
                entity, filter_text=body.get("filter"), company=body.get("company"), values_in=values,
                caller=_optional_caller(request), raise_events=bool(body.get("raiseEvents", False)),
            )
        except ODataError as err:
            return Response(wire.dumps(err.body()), status_code=err.status, media_type="application/json")
        return JSONResponse({"updated": count})

    async def admin_load(self, request: Request) -> Response:
        """Upsert rows by key without events (devstack/fno/load.py): test data, a 100,000-row bench."""
        body = await _json(request)
        rows = _listed(body, "rows", "records (OData POST bodies)")
        loaded = load.load(self.service, self._entity(body), rows, _optional_caller(request))
        return JSONResponse({"loaded": len(rows), "created": loaded.created, "updated": loaded.updated,
                             "unchanged": loaded.unchanged})

    async def admin_delete(self, request: Request) -> Response:
        """Delete records by key without events or validateDelete: a direct SQL delete, for drift tests."""
        body = await _json(request)
        keys = _listed(body, "keys", "objects with every key field")
        return JSONResponse({"deleted": load.delete(self.service, self._entity(body), keys)})

    def _entity(self, body: dict[str, Any]) -> Entity:
        entity = self.schema.entity(str(body.get("entity") or ""))
        if entity is None:
            raise _AdminProblem(f"Unknown entity set '{body.get('entity')}'.")
        return entity

    async def admin_stats(self, request: Request) -> Response:
        records = request.query_params.get("records", "true").lower() not in ("false", "0", "no", "off")
        return Response(wire.dumps(self.stats.snapshot(records=records)), media_type="application/json")

    async def admin_stats_reset(self, request: Request) -> Response:
        self.stats.reset()
        return Response(status_code=204)

    async def admin_outage(self, request: Request) -> Response:
        if request.method == "POST":
            raw = await request.body()
            try:
                seconds, retry_after = outage_request(await _json(request) if raw.strip() else {})
            except ValueError as exc:
                return _problem(400, str(exc))
            self.outage.start(seconds, retry_after)
        elif request.method == "DELETE":
            self.outage.stop()
        return JSONResponse(self.outage.state())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "fno-simulator", "data": "/data/"})

    async def close(self) -> None:
        await self.dispatcher.close()
        self.storage.close()


def _response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, headers=reply.headers)


def _problem(status: int, detail: str) -> Response:
    return JSONResponse({"title": "Bad request" if status == 400 else "Not found", "status": status,
                         "detail": detail}, status_code=status, media_type="application/problem+json")


def _listed(body: dict[str, Any], name: str, what: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise _AdminProblem(f"'{name}' must be a list of {what}.")
    return value


class _AdminProblem(Exception):
    """A bad admin request, answered 400 problem+json with this detail."""


async def _row_problem(request: Request, err: Exception) -> Response:
    """A refused load or delete: which row (0-based index in the list sent) and which field."""
    assert isinstance(err, load.LoadError)
    return JSONResponse({"title": "Bad request", "status": 400, "detail": str(err), "row": err.index,
                         "field": err.field}, status_code=400, media_type="application/problem+json")


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = wire.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _BadAdminBody
    return body


class _BadAdminBody(Exception):
    pass


def _optional_caller(request: Request) -> Caller:
    header = request.headers.get("authorization")
    return caller_from_header(header) if header else SEED_CALLER


def _redact(config: dict[str, Any]) -> dict[str, Any]:
    """Secrets never leave the registry: connection strings and header keys are masked."""
    out = dict(config)
    if out.get("connectionString"):
        out["connectionString"] = out["connectionString"].split(";")[0] + ";SharedAccessKey=***"
    if out.get("headerValue"):
        out["headerValue"] = "***"
    return out


def create_app(settings: Settings | None = None) -> Starlette:
    sim = Simulator(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.close()

    async def bad_body(request: Request, exc: Exception) -> Response:
        return _problem(400, "The request body must be a JSON object.")

    async def bad_admin_request(request: Request, exc: Exception) -> Response:
        return _problem(400, str(exc))

    methods = ["GET", "POST", "PATCH", "PUT", "DELETE", "MERGE"]
    app = Starlette(
        routes=[
            Route("/", sim.health),
            Route("/data", sim.data, methods=methods),
            Route("/data/{rest:path}", sim.data, methods=methods),
            Route("/admin/catalog", sim.admin_catalog),
            Route("/admin/endpoints", sim.admin_endpoints, methods=["GET", "POST"]),
            Route("/admin/endpoints/{name}", sim.admin_endpoint, methods=["DELETE"]),
            Route("/admin/activations", sim.admin_activations, methods=["GET", "POST"]),
            Route("/admin/activations/{id:int}", sim.admin_activation, methods=["PATCH", "DELETE"]),
            Route("/admin/errors", sim.admin_errors),
            Route("/admin/errors/resend", sim.admin_resend, methods=["POST"]),
            Route("/admin/errors/{id:int}/resend", sim.admin_resend, methods=["POST"]),
            Route("/admin/drain", sim.admin_drain, methods=["POST"]),
            Route("/admin/bulk-update", sim.admin_bulk_update, methods=["POST"]),
            Route("/admin/load", sim.admin_load, methods=["POST"]),
            Route("/admin/delete", sim.admin_delete, methods=["POST"]),
            Route("/admin/stats", sim.admin_stats, methods=["GET"]),
            Route("/admin/stats/reset", sim.admin_stats_reset, methods=["POST"]),
            Route("/admin/outage", sim.admin_outage, methods=["GET", "POST", "DELETE"]),
        ],
        lifespan=lifespan,
        exception_handlers={_BadAdminBody: bad_body, _AdminProblem: bad_admin_request, load.LoadError: _row_problem,
                            **disconnects.handlers("devstack.fno")},
    )
    app.state.simulator = sim
    return app
