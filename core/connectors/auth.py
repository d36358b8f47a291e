"""Bearer tokens for the two environments: Entra ID client credentials through msal, a token of the app's
managed identity through azure-identity (AUTH_MODE=identity: no secret anywhere), or a static unsigned token for
the local simulators (they read the caller from it, never verify it).

`BearerAuth` is an httpx.Auth, so every request of a shared AsyncClient gets a fresh-enough token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Protocol

import httpx
import msal

# The local engine's identity in the simulators: stable, so echo checks by initiating user work.
LOCAL_ENGINE_OID = str(uuid.uuid5(uuid.NAMESPACE_URL, "dw-oss engine"))


class TokenError(RuntimeError):
    """No token could be had (wrong tenant, client or secret); permanent until settings change."""


class TokenSource(Protocol):
    async def token(self) -> str: ...


class MsalTokens:
    """Client-credentials tokens for `scope` (`<environment URL>/.default`), cached until near expiry."""

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, scope: str) -> None:
        self._app = msal.ConfidentialClientApplication(
            client_id, authority=f"https://login.microsoftonline.com/{tenant_id}", client_credential=client_secret)
        self._scope = scope
        self._cached: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._cached is not None and self._cached[1] > time.time() + 120:
                return self._cached[0]
            result = await asyncio.to_thread(self._app.acquire_token_for_client, scopes=[self._scope])
            if "access_token" not in result:
                raise TokenError(f"{result.get('error')}: {result.get('error_description', '')}".strip())
            self._cached = (result["access_token"], time.time() + float(result.get("expires_in", 3600)))
            return self._cached[0]


class IdentityTokens:
    """Tokens of an Azure identity for `scope`: the user-assigned managed identity `client_id` (registered as
    the application user in Dataverse and as a Microsoft Entra application in F&O), else whatever
    DefaultAzureCredential finds. azure-identity caches and refreshes them; a failure is a TokenError."""

    def __init__(self, scope: str, client_id: str | None = None) -> None:
        from core.store.credentials import credential

        self._credential = credential(client_id, "managedidentity" if client_id else None)
        self._scope = scope

    async def token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return (await self._credential.get_token(self._scope)).token
        except ClientAuthenticationError as error:
            raise TokenError(f"no token for {self._scope}: {error.message}") from None


def unsigned_token(oid: str, name: str = "dw-oss engine") -> str:
    """An unsigned JWT (alg none) naming the caller, the way the simulators read callers."""
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"oid": oid, "appid": oid, "name": name, "iat": now, "exp": now + 86400 * 365}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class LocalTokens:
    """The simulators' token: static, still sent as a bearer token like the real thing."""

    def __init__(self, oid: str = LOCAL_ENGINE_OID) -> None:
        self.oid = oid
        self._token = unsigned_token(oid)

    async def token(self) -> str:
        return self._token


class BearerAuth(httpx.Auth):
    def __init__(self, source: TokenSource) -> None:
        self.source = source

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.source.token()}"
        yield request
