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
     Application users > New app user: add {who}, with a security role that reads and writes the mapped tables
     and registers webhook steps. The app then registers its webhook and steps itself at start (DEPLOY_ON_START).
  2. F&O: System administration > Setup > Microsoft Entra applications: add {who}, linked to a user that may
     read and write the mapped entities.
  3. F&O business events (F&O has no API for this): System administration > Setup > Business events > Endpoints:
     a new HTTPS endpoint for {get("FNO_EVENTS_URL")}?code=<ingest key>
     (az keyvault secret show --vault-name {get("AZURE_KEY_VAULT_NAME")} --name ingest-key --query value -o tsv);
     then activate the data events of the mapped entities for it. F&O's Service Bus endpoint type is not used:
     the namespace takes Entra ID sign-ins only.
  4. Maps: upload or edit them with the console or `dualwrite maps`, then start them.
"""


def main() -> int:
    sys.stdout.write(steps(dict(os.environ)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
