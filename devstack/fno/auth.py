"""Bearer-token callers. The signature is not checked (this is a local simulator); the claims say who.

The caller id is the token's `oid` (the user's or the service principal's Entra object id), else
`appid`/`azp`, else a stable hash of the token. It is what the simulator records as ModifiedBy and
as InitiatingUserAADObjectId of events, so the engine's echo detection can be tested.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass

from devstack.fno.errors import ODataError

_HASH_NAMESPACE = uuid.UUID("6f3c5a2e-6b1b-4d5e-9a43-0b1f5c1e2d7a")


@dataclass(frozen=True)
class Caller:
    id: str  # throttling bucket and ModifiedBy
    object_id: uuid.UUID  # Entra object id (or a stable stand-in) for events
    kind: str  # "user" or "application"


def caller_from_header(authorization: str | None) -> Caller:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise ODataError(401, "Authorization has been denied for this request.", headers={"WWW-Authenticate": "Bearer"})
    token = authorization[7:].strip()
    if not token:
        raise ODataError(401, "Authorization has been denied for this request.", headers={"WWW-Authenticate": "Bearer"})
    claims = _claims(token)
    oid = claims.get("oid")
    app = claims.get("appid") or claims.get("azp")
    # App-only (client credentials) tokens carry appid but no delegated scopes (scp).
    kind = "application" if app and "scp" not in claims else "user"
    for candidate in (oid, app):
        if isinstance(candidate, str):
            try:
                object_id = uuid.UUID(candidate)
            except ValueError:
                continue
            return Caller(str(object_id), object_id, kind)
    stand_in = uuid.uuid5(_HASH_NAMESPACE, token)
    return Caller(str(stand_in), stand_in, "user")


def _claims(token: str) -> dict[str, object]:
    parts = token.split(".")
    if len(parts) < 2:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def make_token(oid: str | None = None, appid: str | None = None, **claims: object) -> str:
    """An unsigned JWT (alg none) carrying the given claims; for tests, benches and the demo."""
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    body: dict[str, object] = dict(claims)
    if oid:
        body["oid"] = oid
    if appid:
        body["appid"] = appid
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."
