"""A caller that goes away before its request is complete is one log line in the simulators, not a traceback.

Starlette raises ClientDisconnect from `await request.body()` when the connection closes mid-body (a client timing
out, a proxy dropping the connection, a test killing a process); unhandled, uvicorn logs it as "Exception in ASGI
application" with a page of traceback. The simulators register this handler for it instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

CLIENT_CLOSED_REQUEST = 499  # nginx's status for it; nobody is there to read it


def handlers(logger_name: str) -> dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]]:
    """Starlette `exception_handlers` entries that log a disconnected caller once, on `logger_name`."""
    log = logging.getLogger(logger_name)

    async def caller_gone(request: Request, exc: Exception) -> Response:
        log.warning("%s %s: the caller disconnected before its request was complete; not served",
                    request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    return {ClientDisconnect: caller_gone}
