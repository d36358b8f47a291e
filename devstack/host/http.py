"""The HTTP side of the local host: HTTP triggers under /<routePrefix>/<route>, function keys,
and the host's admin endpoint to run a non-HTTP function by hand.

Behaviour copied from the Functions host: a method the route does not accept is a 404 (the
route does not match), a missing or wrong key is a 401 with an empty body, an unhandled
exception in the function is a 500 with an empty body.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from devstack.host.config import HostConfig
from devstack.host.indexing import FunctionSpec, HttpTrigger
from devstack.host.invocation import InvocationFailed, Invoker
from devstack.host.servicebus import manual_message

log = logging.getLogger("devstack.host")


class HttpFront:
    """ASGI app for HTTP triggers. `lifespan` hooks let the host start and stop pumps with it."""

    def __init__(self, specs: list[FunctionSpec], config: HostConfig, invoker: Invoker, lifespan: Any) -> None:
        self.config = config
        self.invoker = invoker
        self.lifespan = lifespan
        self.by_name = {s.name.lower(): s for s in specs}
        http_specs = [s for s in specs if isinstance(s.trigger, HttpTrigger)]
        # ASP.NET route precedence: literal segments before parameters before catch-alls.
        self.routes = sorted(http_specs, key=lambda s: s.trigger.route.precedence)  # type: ignore[union-attr]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.lifespan.startup()
                except Exception as exc:
                    log.exception("host start failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.lifespan.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        if path.lower().startswith("/admin/functions/"):
            return await self._admin_invoke(request, path.split("/", 3)[3])
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        if prefix and not (path.lower() == prefix.lower() or path.lower().startswith(prefix.lower() + "/")):
            return Response(status_code=404)
        relative = path[len(prefix):].strip("/")
        for spec in self.routes:
            trigger: HttpTrigger = spec.trigger  # type: ignore[assignment]
            values = trigger.route.match(relative)
            if values is None or request.method.upper() not in trigger.methods:
                continue
            if not self._authorized(request, trigger.auth_level):
                return Response(status_code=401)
            return await self._invoke_http(spec, request, values)
        return Response(status_code=404)

    def _authorized(self, request: Request, level: str) -> bool:
        if level == "anonymous":
            return True
        given = _given_key(request)
        accepted = [self.config.master_key] if level == "admin" else [self.config.function_key, self.config.master_key]
        return any(hmac.compare_digest(given, key.encode()) for key in accepted if key)

    async def _invoke_http(self, spec: FunctionSpec, request: Request, route_params: dict[str, str]) -> Response:
        body = await request.body()
        http_request = func.HttpRequest(
            method=request.method.upper(),
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query_params),
            route_params=route_params,
            body=body,
        )
        try:
            detail = f"method={request.method} path={request.url.path}"
            result = await self.invoker.invoke(spec, http_request, detail=detail)
        except InvocationFailed:
            return Response(status_code=500)
        return _to_response(result)

    async def _admin_invoke(self, request: Request, name: str) -> Response:
        """POST /admin/functions/<name> {"input": "..."} with the master key runs a non-HTTP function
        once, as the real host's admin API does (202 Accepted)."""
        if request.method != "POST" or not hmac.compare_digest(_given_key(request), self.config.master_key.encode()):
            return Response(status_code=401 if request.method == "POST" else 405)
        spec = self.by_name.get(name.lower())
        if spec is None or isinstance(spec.trigger, HttpTrigger):
            return Response(status_code=404)
        try:
            payload = json.loads(await request.body() or b"{}")
            text = str(payload.get("input", ""))
        except (json.JSONDecodeError, AttributeError):
            return Response(status_code=400)
        value: Any
        if spec.trigger_type == "timerTrigger":
            value = TimerRequest(past_due=False)
        else:
            value = manual_message(text)
            value = [value] if spec.trigger.many else value  # type: ignore[union-attr]
        try:
            await self.invoker.invoke(spec, value, detail="source=admin")
        except InvocationFailed:
            return Response(status_code=500)
        return Response(status_code=202)


def _given_key(request: Request) -> bytes:
    """The key a caller sent, as Azure takes it: the x-functions-key header or the `code` parameter."""
    return (request.headers.get("x-functions-key") or request.query_params.get("code") or "").encode()


def _to_response(result: Any) -> Response:
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-type"}
        media = result.mimetype
        if result.charset and media and media.startswith("text/"):
            media = f"{media}; charset={result.charset}"
        content_type = result.headers.get("Content-Type") or media
        return Response(result.get_body(), status_code=result.status_code, headers=headers, media_type=content_type)
    if result is None:
        return Response(status_code=204)
    if isinstance(result, str):
        return Response(result, media_type="text/plain; charset=utf-8")
    if isinstance(result, bytes):
        return Response(result, media_type="application/octet-stream")
    log.error("HTTP function returned %s; expected HttpResponse, str or bytes", type(result).__name__)
    return Response(status_code=500)
