"""Clients of the two systems: Dataverse Web API and F&O OData (httpx async, typed errors, retries, $batch)."""

from core.connectors.auth import BearerAuth, LocalTokens, MsalTokens, TokenError, TokenSource
from core.connectors.batch import BatchOp, BatchResult
from core.connectors.dataverse import DataverseClient, UpsertResult
from core.connectors.errors import (
    AuthFailed,
    ConflictError,
    ConnectorError,
    NotFound,
    PermanentError,
    ThrottledError,
    TransientError,
    ValidationFailed,
)
from core.connectors.fno import FnoClient
from core.connectors.http import Action, ODataHttp, Stats, classify
from core.connectors.paging import Page

__all__ = [
    "Action",
    "AuthFailed",
    "BatchOp",
    "BatchResult",
    "BearerAuth",
    "ConflictError",
    "ConnectorError",
    "DataverseClient",
    "FnoClient",
    "LocalTokens",
    "MsalTokens",
    "NotFound",
    "ODataHttp",
    "Page",
    "PermanentError",
    "Stats",
    "ThrottledError",
    "TokenError",
    "TokenSource",
    "TransientError",
    "UpsertResult",
    "ValidationFailed",
    "classify",
]
