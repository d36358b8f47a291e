"""The ASGI app: authentication and service protection at the door, `$batch` unpacking, then the Web API
dispatcher (api.py)."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack import disconnects
from devstack.dataverse import direct
from devstack.dataverse.api import JSON, WebApi, prefer_items
from devstack.dataverse.auth import Caller, caller_for_object_id, caller_from_authorization
from devstack.dataverse.batch import InnerRequest, InnerResponse, execute_batch, parse_batch
from devstack.dataverse.errors import DataverseError, bad_request, does_not_exist
from devstack.dataverse.limits import Limits, ServiceProtection
from devstack.dataverse.records import API_PREFIX, OperationContext, Records
from devstack.dataverse.schema import Schema, load_schema
from devstack.dataverse.stats import CountingPipeline, Outage, Stats, outage_request
from devstack.dataverse.store import Database
from devstack.dataverse.webhooks import WebhookPipeline, WebhookSettings
from devstack.dataverse.wire import dumps


@dataclass
class Settings:
    db_path: str = ":memory:"
    seed: bool = True
    limits: Limits = field(default_factory=Limits)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)


def bypass_options(headers: dict[str, str]) -> dict[str, Any]:
    """The business-logic bypass headers of reference §2.9 as OperationContext fields."""
    mode = headers.get("mscrm.bypassbusinesslogicexecution", "").lower()
    return {
        "bypass_step_ids": frozenset(
            s.strip().lower() for s in headers.get("mscrm.bypassbusinesslogicexecutionstepids", "").split(",")
            if s.strip()
        ),
        "bypass_sync": "customsync" in mode or headers.get("mscrm.bypasscustompluginexecution", "").lower() == "true",
        "bypass_async": "customasync" in mode,
    }


class Simulator:
    def __init__(self, settings: Settings, schema: Schema | None = None) -> None:
        self.settings = settings
        self.schema = schema or load_schema()
        self.db = Database(settings.db_path)
        self.webhooks = WebhookPipeline(self.db, self.schema, settings.webhooks)
        self.stats = Stats()
        self.outage = Outage()
        self.records = Records(self.db, self.schema, CountingPipeline(self.webhooks, self.stats))
        self.protection = ServiceProtection(settings.limits)
        self.api = WebApi(self.db, self.schema, self.records, events=self.webhooks)

    # -- the door -------------------------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        """The Web API door with the simulator's tap: an outage answers 503 first; every request is counted."""
        path = request.scope["path"].split(API_PREFIX.rstrip("/"), 1)[-1].lstrip("/")
        if self.outage.active():
            headers = {k.lower(): v for k, v in request.headers.items()}
            response = self._error_response(self.outage.error(), "odata.include-annotations" in
                                            headers.get("prefer", ""))
            try:
                caller = caller_from_authorization(headers.get("authorization"), str(request.base_url).rstrip("/"))
                request.state.stats_caller = caller.aad_object_id or caller.systemuserid
            except DataverseError:
                pass
        else:
            response = await self._serve(request)
        self.stats.request(request.method, path, response.status_code,
                           getattr(request.state, "stats_caller", "anonymous"))
        return response

    async def _serve(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/") + API_PREFIX
        headers = {k.lower(): v for k, v in request.headers.items()}
        annotations = "odata.include-annotations" in headers.get("prefer", "")
        try:
            caller = caller_from_authorization(headers.get("authorization"), str(request.base_url).rstrip("/"))
        except DataverseError as exc:
            return Response(status_code=401, headers=exc.headers)
        request.state.stats_caller = caller.aad_object_id or caller.systemuserid
        try:
            started = self.protection.enter(caller.systemuserid)
        except DataverseError as exc:
            return self._error_response(exc, annotations)
        try:
            if self.db.get("systemuser", caller.systemuserid) is None:
                # Only a first-time caller takes the write lock, so reads never wait behind a sync webhook.
                async with self.db.unit():
                    self.records.ensure_user(caller)
            try:
                effective = await self._impersonated(headers, caller)
            except DataverseError as exc:
                return self._error_response(exc, annotations)
            ctx = OperationContext(
                caller=effective, delegate=caller if effective is not caller else None,
                correlation_id=headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()),
                tag=request.query_params.get("tag"),
                **bypass_options(headers),
            )
            # The decoded path straight from the ASGI scope: a decoded '?' or '#' in a key must not split it.
            path = request.scope["path"].split(API_PREFIX.rstrip("/"), 1)[-1].lstrip("/")
            query = request.url.query
            body = await request.body()
            if path == "$batch" and request.method == "POST":
                return await self._batch(body, headers, ctx, base, request.state.stats_caller)
            inner = InnerRequest(request.method, path + ("?" + query if query else ""), headers, body)
            result = await self.api.handle(inner, ctx, base)
            extra = {"REQ_ID": str(uuid.uuid4()), **self.protection.remaining(caller.systemuserid)}
            return Response(result.body or None, status_code=result.status, headers={**result.headers, **extra})
        finally:
            self.protection.leave(caller.systemuserid, started)

    async def _impersonated(self, headers: dict[str, str], caller: Caller) -> Caller:
        """The user a request acts for: `CallerObjectId: <Entra object id>` or legacy `MSCRMCallerID:
        <systemuserid>` (reference §2.9); the authenticated caller otherwise. No privilege check."""
        if headers.get("callerobjectid"):
            try:
                user = caller_for_object_id(headers["callerobjectid"])
            except ValueError:
                raise bad_request(f"CallerObjectId '{headers['callerobjectid']}' is not a guid.") from None
            if self.db.get("systemuser", user.systemuserid) is None:
                async with self.db.unit():
                    self.records.ensure_user(user)
            return user
        if headers.get("mscrmcallerid"):
            raw = headers["mscrmcallerid"]
            try:
                user_id = str(uuid.UUID(raw))
            except ValueError:
                raise bad_request(f"MSCRMCallerID '{raw}' is not a guid.") from None
            found = self.db.get("systemuser", user_id)
            if found is None:
                raise does_not_exist("systemuser", user_id)
            return Caller(user_id, found[1].get("azureactivedirectoryobjectid"), found[1].get("fullname") or user_id)
        return caller

    async def _batch(self, body: bytes, headers: dict[str, str], ctx: OperationContext, base: str,
                     stats_caller: str) -> Response:
        annotations = "odata.include-annotations" in headers.get("prefer", "")
        try:
            items = parse_batch(body, headers.get("content-type", ""))
        except DataverseError as exc:
            return self._error_response(exc, annotations)

        async def run(inner: InnerRequest) -> InnerResponse:
            # Parts inherit the batch's Prefer unless they carry their own.
            if "prefer" not in inner.headers and "prefer" in headers:
                inner.headers["prefer"] = headers["prefer"]
            # Bypass headers work on the batch and on each part (reference §2.5 leaves open which one counts).
            part = bypass_options(inner.headers)
            part_ctx = replace(
                ctx, bypass_step_ids=ctx.bypass_step_ids | part["bypass_step_ids"],
                bypass_sync=ctx.bypass_sync or part["bypass_sync"],
                bypass_async=ctx.bypass_async or part["bypass_async"],
            )
            response = await self.api.handle(inner, part_ctx, base)
            self.stats.operation(inner.method, inner.url.split(API_PREFIX, 1)[-1], response.status, stats_caller)
            return response

        status, content_type, text = await execute_batch(
            items, run, self.db, continue_on_error="odata.continue-on-error" in prefer_items(headers)
        )
        return Response(text.encode(), status_code=status, media_type=None,
                        headers={"Content-Type": content_type, "OData-Version": "4.0"})

    @staticmethod
    def _error_response(exc: DataverseError, annotations: bool) -> Response:
        return Response(dumps(exc.body(annotations)).encode(), status_code=exc.status,
                        headers={"Content-Type": JSON, "OData-Version": "4.0", **exc.headers})

def create_app(settings: Settings) -> Starlette:
    sim = Simulator(settings)
    if settings.seed:
        from devstack.dataverse.seed import seed_demo

        seed_demo(sim)
    else:
        from devstack.dataverse.seed import seed_system

        seed_system(sim)

    async def health(_: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def drain(_: Request) -> Response:
        # Test hook (not part of Dataverse): wait until queued async webhook steps have finished.
        await sim.webhooks.drain()
        return Response(status_code=204)

    async def stats(request: Request) -> Response:
        # Test hook: what the simulator served since the last reset (README "Stats and outage").
        records = request.query_params.get("records", "true").lower() not in ("false", "0", "no", "off")
        return Response(dumps(sim.stats.snapshot(records=records)).encode(), media_type="application/json")

    async def stats_reset(_: Request) -> Response:
        sim.stats.reset()
        return Response(status_code=204)

    async def outage(request: Request) -> Response:
        # Test hook: 503 + Retry-After to every Web API request, for `seconds` or until DELETE.
        if request.method == "POST":
            try:
                raw = await request.body()
                seconds, retry_after = outage_request(json.loads(raw) if raw.strip() else None)
            except ValueError as exc:
                problem = {"title": "Bad request", "status": 400, "detail": str(exc)}
                return Response(dumps(problem).encode(), status_code=400, media_type="application/problem+json")
            sim.outage.start(seconds, retry_after)
        elif request.method == "DELETE":
            sim.outage.stop()
        return Response(dumps(sim.outage.state()).encode(), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await sim.webhooks.close()
        await sim.api.virtual.close()

    app = Starlette(routes=[
        Route("/_sim/health", health),
        Route("/_sim/drain", drain, methods=["POST"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/stats/reset", stats_reset, methods=["POST"]),
        Route("/_sim/outage", outage, methods=["GET", "POST", "DELETE"]),
        *direct.routes(sim.records),  # /_sim/load, /_sim/update, /_sim/delete: writes without webhooks
        Route("/api/data/v9.2", sim.endpoint, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        Route("/api/data/v9.2/{rest:path}", sim.endpoint, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
    ], lifespan=lifespan, exception_handlers=disconnects.handlers("devstack.dataverse"))
    app.state.simulator = sim
    app.state.started = time.time()
    return app
