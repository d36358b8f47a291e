"""OData errors in the shape F&O answers with.

F&O wraps X++ failures (validation, duplicate key) as `AxODataWriteException` with the generic top
message "An error has occurred." and the infolog text in `innererror.message`; protocol-level mistakes
(bad URL, key count, filter syntax) come from ODataLib with the specific text as the top message.
"""

from __future__ import annotations

from typing import Any

WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
DELETE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataDeleteException"
ODATA_EXCEPTION = "Microsoft.OData.ODataException"


class ODataError(Exception):
    """An error answer: HTTP status, message, optional inner error (type + infolog text)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        inner: str | None = None,
        inner_type: str | None = None,
        headers: dict[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(inner or message)
        self.status = status
        self.message = message
        self.inner = inner
        self.inner_type = inner_type
        self.headers = headers or {}
        # The field a value error is about (not on the wire): the admin load names it with the row.
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": "", "message": self.message}
        if self.inner is not None:
            error["innererror"] = {"message": self.inner, "type": self.inner_type or ODATA_EXCEPTION, "stacktrace": ""}
        return {"error": error}


def bad_request(message: str) -> ODataError:
    return ODataError(400, message)


def write_failed(table: str, infolog: str, status: int = 400, field: str | None = None) -> ODataError:
    """An X++ validateWrite/insert failure: the infolog lines joined the way F&O shows them."""
    return ODataError(
        status,
        "An error has occurred.",
        inner=f"Write failed for table row of type '{table}'. Infolog: {infolog}",
        inner_type=WRITE_EXCEPTION,
        field=field,
    )


def not_found(segment: str) -> ODataError:
    return ODataError(404, f"Resource not found for the segment '{segment}'.")
