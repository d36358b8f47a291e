"""Who is calling: a bearer token is required; the caller is the JWT's `oid` claim (the signature is not
verified: this is a local simulator), else a stable hash of the token. Each caller is a systemuser row."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from devstack.dataverse.errors import DataverseError

# Fixed ids so webhook bodies and tests can rely on them across restarts.
NAMESPACE = uuid.UUID("5d8b0f9e-4c1a-4f7e-9d3b-2a6c1e0f7b11")
ORGANIZATION_ID = "4ef5b371-e89e-e711-8122-000d3aa2331c"
BUSINESS_UNIT_ID = "e2b9dd85-e89e-e711-8122-000d3aa2331c"


@dataclass(frozen=True)
class Caller:
    systemuserid: str
    aad_object_id: str | None
    name: str
    application_id: str | None = None


def _claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def unauthorized(org_url: str) -> DataverseError:
    # Dataverse answers 401 with an empty body and a WWW-Authenticate challenge naming the authority.
    return DataverseError(401, "", "", headers={
        "WWW-Authenticate": (
            "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, "
            f"resource_id={org_url}"
        ),
    })


def caller_from_authorization(header: str | None, org_url: str) -> Caller:
    if not header or not header.lower().startswith("bearer ") or not header[7:].strip():
        raise unauthorized(org_url)
    token = header[7:].strip()
    claims = _claims(token)
    oid = claims.get("oid") if claims else None
    if isinstance(oid, str) and oid:
        with contextlib.suppress(ValueError):
            oid = str(uuid.UUID(oid))
        name = str(claims.get("name") or claims.get("upn") or claims.get("appid") or oid)  # type: ignore[union-attr]
        appid = claims.get("appid") or claims.get("azp")  # type: ignore[union-attr]
        return Caller(caller_for_object_id(oid).systemuserid, oid, name, str(appid) if appid else None)
    digest = hashlib.sha256(token.encode()).hexdigest()
    return Caller(str(uuid.uuid5(NAMESPACE, "token:" + digest)), None, f"token {digest[:12]}")


def caller_for_object_id(oid: str) -> Caller:
    """The systemuser of an Entra object id (impersonation with the `CallerObjectId` header)."""
    oid = str(uuid.UUID(oid))
    return Caller(str(uuid.uuid5(NAMESPACE, "oid:" + oid)), oid, f"user {oid}")


def make_token(oid: str, *, name: str = "dev user", appid: str | None = None) -> str:
    """An unsigned JWT the simulator accepts (tests, bench and the devstack use it)."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    claims: dict[str, Any] = {"oid": oid, "name": name, "tid": str(uuid.uuid5(NAMESPACE, "tenant"))}
    if appid:
        claims["appid"] = appid
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.sig"
