"""azd post-provision hook: print what the admin must do once, now that the app exists.

azd runs it after `azd provision` / `azd up` with the Bicep outputs as environment variables. It only reads
them and prints; it changes nothing and never prints a secret (the ingest key stays in Key Vault).
Run it by hand with the same variables set to see the text again.
"""

from __future__ import annotations

import os
import sys


def steps(env: dict[str, str]) -> str:
    """The one-time steps, filled in with this deployment's names and URLs."""

    def get(name: str) -> str:
        return env.get(name) or f"<{name} not set>"

    identity = env.get("AUTH_MODE", "identity") == "identity"
    who = (
        f"the managed identity (client id {get('AZURE_MANAGED_IDENTITY_CLIENT_ID')})"
        if identity
        else "your app registration (CLIENT_ID)"
    )
    return f"""
Dual-write engine provisioned in {get("AZURE_RESOURCE_GROUP")}.

  Function App       {get("AZURE_FUNCTION_APP_NAME")}  ({get("APP_URL")})
  Management API     {get("MANAGEMENT_API_URL")}  (master key: az functionapp keys list)
  Dataverse webhook  {get("DATAVERSE_WEBHOOK_URL")}
  F&O events         {get("FNO_EVENTS_URL")}
  Ingest key         Key Vault {get("AZURE_KEY_VAULT_NAME")}, secret ingest-key (also the app's host key `ingest`)

Once, by an administrator:
  1. Dataverse: Power Platform admin center > Environments > your environment > Settings > Users + permissions >
     Application users > New app user: add {who}, give it a security role that reads and writes the mapped
     tables and registers plug-in steps (System Customizer + the tables' privileges).
  2. F&O: System administration > Setup > Microsoft Entra applications: add {who} with a user that may write the
     mapped entities and manage business events.
  3. F&O business events: the app registers its HTTPS endpoint and activates the events of the maps at start
     (DEPLOY_ON_START=true). F&O's Service Bus endpoint type is not used: the namespace takes Entra auth only.
     Check it in System administration > Setup > Business events > Endpoints (endpoint URL {get("FNO_EVENTS_URL")}).
  4. Maps: upload or edit them with the console or `dualwrite maps`, then start them.
"""


def main() -> int:
    sys.stdout.write(steps(dict(os.environ)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
