"""Errors in the Web API's documented body shape (reference §2.8): `{"error": {"code", "message"}}`,
the CDS annotations only when the client asks for them with `Prefer: odata.include-annotations`."""

from __future__ import annotations

from typing import Any

# Codes the simulator answers with (see README for where each comes from).
DUPLICATE_RECORD = "0x80040237"
OBJECT_DOES_NOT_EXIST = "0x80040217"
KEY_DOES_NOT_EXIST = "0x80060891"
PLUGIN_ERROR = "0x80040265"
BAD_REQUEST = "0x80060888"
INVALID_ARGUMENT = "0x80040203"
REQUESTS_EXCEEDED = "0x80072322"
EXECUTION_TIME_EXCEEDED = "0x80072321"
CONCURRENCY_EXCEEDED = "0x80072326"


class DataverseError(Exception):
    """A failed Web API operation: HTTP status, Dataverse error code (often unrelated to the status), text."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        # The body property a value error is about (not on the wire): /_sim/load names it with the row.
        self.column: str | None = None
        # The error's log (the "Download log" of the error dialog), served as the TraceText annotation.
        self.trace = ""

    def body(self, annotations: bool = False) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if annotations:
            hexcode = self.code[2:] if self.code.startswith("0x") else self.code
            error.update({
                "@Microsoft.PowerApps.CDS.ErrorDetails.OperationStatus": "0",
                "@Microsoft.PowerApps.CDS.ErrorDetails.SubErrorCode": "0",
                "@Microsoft.PowerApps.CDS.HelpLink": (
                    "http://go.microsoft.com/fwlink/?LinkID=398563&error=Microsoft.Crm.CrmException%3a"
                    f"{hexcode}&client=platform"
                ),
                "@Microsoft.PowerApps.CDS.TraceText": self.trace,
                "@Microsoft.PowerApps.CDS.InnerError.Message": self.message,
            })
        return {"error": error}


def bad_request(message: str, code: str = BAD_REQUEST) -> DataverseError:
    return DataverseError(400, code, message)


def does_not_exist(table: str, row_id: str, code: str = OBJECT_DOES_NOT_EXIST) -> DataverseError:
    return DataverseError(404, code, f"{table} With Id = {row_id} Does Not Exist")
