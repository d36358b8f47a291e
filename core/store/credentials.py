"""Identity-based connections: which Azure credential a connection uses, and the parts of its settings.

A connection is the `Key=Value;...` text of a setting (core/settings.py). With a key in it (AccountKey,
SharedAccessKey) or UseDevelopmentStorage/UseDevelopmentEmulator it is a connection string and the SDK reads it
as before. Made from `<NAME>__fullyQualifiedNamespace` / `__tableServiceUri` it holds an endpoint and, maybe,
`Credential=managedidentity;ClientId=...`: then the client authenticates with azure-identity, the way the
Functions host does for the same settings.
"""

from __future__ import annotations

import functools

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from core.settings import parse_connection_string


def connection_parts(connection: str) -> dict[str, str]:
    return parse_connection_string(connection)


@functools.cache
def credential(client_id: str | None = None, kind: str | None = None) -> AsyncTokenCredential:
    """One credential per identity and process (each caches its tokens): the user-assigned managed identity
    `client_id` when `kind` is managedidentity (the Functions host's `__credential` value), else
    DefaultAzureCredential (environment, workload or managed identity, then developer sign-ins), told the
    client id when there is one."""
    if (kind or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def credential_of(parts: dict[str, str]) -> AsyncTokenCredential:
    """The credential named by a connection's parts (`credential`, `clientid`)."""
    return credential(parts.get("clientid") or None, parts.get("credential") or None)
