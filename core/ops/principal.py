"""Who App Service authentication (Entra ID) says the caller is: the `x-ms-client-principal` header it sets after
validating the caller's token (and strips from what a client sends). Trust it only where that authentication is
in front of the app."""

from __future__ import annotations

import base64
import json

HEADER = "x-ms-client-principal"


def principal_roles(header: str) -> set[str]:
    """The app roles in a principal header (base64 JSON: `claims` of `typ` roles, or the principal's `role_typ`);
    ValueError when it cannot be read."""
    try:
        principal = json.loads(base64.b64decode(header))
        role_type = principal.get("role_typ") or "roles"
        return {str(c.get("val")) for c in principal.get("claims", []) if c.get("typ") in (role_type, "roles")}
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"the {HEADER} header cannot be read") from error
