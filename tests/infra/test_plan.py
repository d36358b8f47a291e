"""The dry run prints what would be created, from the Bicep, without Azure; the hook prints the one-time steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.hooks.postprovision import steps
from infra.plan import plan
from tests.infra.conftest import edit

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "AZURE_ENV_NAME": "dw-test",
    "AZURE_LOCATION": "swedencentral",
    "DATAVERSE_URL": "https://org.crm.dynamics.com",
    "FNO_URL": "https://env.operations.dynamics.com",
    "CLIENT_SECRET": "s3cret-value",
    "ALERT_SMTP_PASSWORD": "pw-9",
}


def test_the_dry_run_lists_resources_queues_roles_and_settings() -> None:
    result = plan(ROOT, environ=ENV)
    types = [r["type"] for r in result["resources"]]
    assert types.count("Microsoft.Authorization/roleAssignments") == 8
    assert {"Microsoft.Web/sites", "Microsoft.ServiceBus/namespaces/queues", "Microsoft.KeyVault/vaults"} <= set(types)
    assert [q["name"] for q in result["queues"]] == ["changes", "fno-events", "sync-pages"]
    settings = result["app_settings"]
    assert settings["DATAVERSE_URL"] == "https://org.crm.dynamics.com" and settings["CHANGES_QUEUE"] == "changes"
    assert settings["APP_URL"] == "https://${site.properties.defaultHostName}"  # known once the app exists
    assert result["parameters"]["environmentName"] == "dw-test" and result["parameters"]["planSku"] == "FC1"
    assert result["parameters"]["ingestKey"] == "(secure)"  # azd's secretOrRandomPassword, never shown


def test_the_dry_run_never_prints_a_secret_and_follows_parameters() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "infra.plan", "--param", "planSku=EP1"],
        cwd=ROOT,
        env={**ENV, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "s3cret-value" not in out and "pw-9" not in out
    assert "planSku                      EP1" in out and "Resources (30)" in out
    assert "CLIENT_SECRET" in out and "SERVICEBUS_CONNECTION__fullyQualifiedNamespace" in out
    as_json = subprocess.run(
        [sys.executable, "-m", "infra.plan", "--json"],
        cwd=ROOT,
        env={**ENV, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert json.loads(as_json)["parameters"]["clientSecret"] == "(secure)"


def test_the_dry_run_reads_a_changed_template(repo: Path) -> None:
    edit(repo / "infra/app/servicebus.bicep", "name: 'sync-pages'", "name: 'sync-jobs'")
    assert [q["name"] for q in plan(repo, environ=ENV)["queues"]][-1] == "sync-jobs"


def test_the_post_provision_hook_prints_the_urls_and_steps_without_the_key() -> None:
    env = {
        "AZURE_RESOURCE_GROUP": "rg-dw",
        "AZURE_FUNCTION_APP_NAME": "func-x",
        "APP_URL": "https://func-x.net",
        "DATAVERSE_WEBHOOK_URL": "https://func-x.net/api/dataverse/webhook",
        "FNO_EVENTS_URL": "https://func-x.net/api/fno/events",
        "AZURE_KEY_VAULT_NAME": "kv-x",
        "AZURE_MANAGED_IDENTITY_CLIENT_ID": "1234",
        "AUTH_MODE": "identity",
        "INGEST_KEY": "never-printed",
    }
    text = steps(env)
    assert "https://func-x.net/api/dataverse/webhook" in text and "https://func-x.net/api/fno/events" in text
    assert "client id 1234" in text and "Business events" in text and "Application users" in text
    assert "never-printed" not in text
    assert "<APP_URL not set>" in steps({})  # run by hand without azd: says what is missing


def test_the_deploy_guide_names_only_what_exists() -> None:
    """README's "Deploy to Azure": every `azd env set` name is read by main.parameters.json, every output it
    names is an output of main.bicep, every file it points to exists."""
    import re

    from infra.model import Deployment

    readme = (ROOT / "README.md").read_text()
    guide = readme.split("## Deploy to Azure", 1)[1].split("\n## ", 1)[0]
    parameters = (ROOT / "infra/main.parameters.json").read_text()
    optional = guide.split("Optional settings", 1)[1].split("The other tunables", 1)[0]
    names = re.findall(r"azd env set ([A-Z][A-Z0-9]*_[A-Z0-9_]+)", guide) + re.findall(r"`([A-Z]+_[A-Z_]+)`", optional)
    assert len(names) > 10
    for name in names:
        assert "${" + name in parameters, name
    outputs = set(Deployment.load(ROOT).main.doc["outputs"])
    for name in re.findall(r"output `([A-Z_]+)`|properties\.outputs\.([A-Z_]+)|<(AZURE_[A-Z_]+)>", guide):
        assert next(n for n in name if n) in outputs, name
    for path in re.findall(r"\b((?:infra|tests)/[\w./-]+\.(?:bicep|py|json|md))", guide):
        assert (ROOT / path).exists(), path


def test_the_dry_run_works_out_names_conditions_and_settings_from_the_parameters() -> None:
    result = plan(ROOT, environ=ENV, overrides={"serviceBusDataOwner": "false", "authMode": "msal"})
    names = {r["resource"]: r["name"] for r in result["resources"]}
    assert names["site"] == "func-${token}" and names["plan"] == "plan-func-${token}" and names["group"] == "rg-dw-test"
    created = {r["role"]: r.get("created", "yes") for r in result["roles"]}
    assert created["Azure Service Bus Data Owner"] == "no" and created["Azure Service Bus Data Sender"] == "yes"
    settings = result["app_settings"]
    assert settings["CLIENT_SECRET"] == "@Microsoft.KeyVault(VaultName=kv-${token};SecretName=client-secret)"
    assert settings["SERVICEBUS_CONNECTION__fullyQualifiedNamespace"] == "sb-${token}.servicebus.windows.net"
    assert settings["SWEEP_ENABLED"] == "true" and "FUNCTIONS_WORKER_RUNTIME" not in settings  # forbidden on FC1
    assert plan(ROOT, environ=ENV, overrides={"planSku": "EP1"})["app_settings"]["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_the_telemetry_settings_bicep_writes_choose_the_export_the_engine_expects() -> None:
    """core/ops/telemetry.py reads the app settings main.bicep writes: Application Insights through the Python
    worker by default, OTLP when otlpEndpoint is given."""
    from core.ops.telemetry import plan as telemetry_plan

    default = plan(ROOT, environ=ENV)["app_settings"]
    assert telemetry_plan(default) == "functions-worker"
    otlp = plan(ROOT, environ=ENV, overrides={"otlpEndpoint": "https://otel.example.com:4318"})["app_settings"]
    assert otlp["PYTHON_ENABLE_OPENTELEMETRY"] == "true" and otlp["APPLICATIONINSIGHTS_CONNECTION_STRING"] == ""
    assert telemetry_plan(otlp) == "otlp"


def test_the_app_settings_bicep_writes_are_valid_engine_settings() -> None:
    """The values (not only the names): what main.bicep sets loads into core/settings.py, identity-based. Values
    Azure makes at deployment get the shape Azure gives them."""
    from core.settings import load_settings, parse_connection_string

    at_deployment = {  # output -> what Azure returns for it
        "storage.outputs.tableEndpoint": "https://sttok123.table.core.windows.net/",
        "identity.outputs.clientId": "11111111-2222-3333-4444-555555555555",
        "identity.outputs.principalId": "66666666-7777-8888-9999-000000000000",
        "tenant().tenantId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "monitoring.outputs.connectionString": "InstrumentationKey=k;IngestionEndpoint=https://x.in.ai.azure.com/",
        "https://${site.properties.defaultHostName}": "https://func-tok123.azurewebsites.net",
    }
    settings = {}
    for name, value in plan(ROOT, environ=ENV)["app_settings"].items():
        for made, real in at_deployment.items():
            value = value.replace(made, real) if made.startswith("https://${") else (real if value == made else value)
        settings[name] = value.replace("${identity.outputs.clientId}", at_deployment["identity.outputs.clientId"])
        settings[name] = settings[name].replace("${token}", "tok123")
    assert not [n for n, v in settings.items() if "outputs." in v or "${" in v]
    loaded = load_settings(settings)
    bus = parse_connection_string(loaded.servicebus_connection.get_secret_value())
    assert (
        bus["fullyqualifiednamespace"] == "sb-tok123.servicebus.windows.net" and bus["credential"] == "managedidentity"
    )
    assert parse_connection_string(loaded.table_storage_connection.get_secret_value())["clientid"].startswith("1111")
    assert loaded.auth_mode == "identity" and loaded.client_id == "11111111-2222-3333-4444-555555555555"
    assert str(loaded.app_url) == "https://func-tok123.azurewebsites.net/" and loaded.sweep_interval_seconds == 60


def test_the_dry_run_shows_no_network_by_default() -> None:
    result = plan(ROOT, environ=ENV)
    assert result["errors"] == [] and result["network"]["private networking"] == "off"
    assert set(result["network"]["public network access"].values()) == {"Enabled"}
    assert result["network"]["app subnet"] == "none"
    assert result["network"]["route all traffic into the network"] == "false"
    network = [r for r in result["resources"] if r["module"] == "app/network.bicep"]
    assert len(network) == 5 and {r["created"] for r in network} == {"no"}


def test_the_dry_run_shows_the_private_network_on_elastic_premium_with_service_bus_premium() -> None:
    env = {**ENV, "PRIVATE_NETWORKING": "true", "PLAN_SKU": "EP2", "SERVICEBUS_SKU": "Premium"}
    result = plan(ROOT, environ=env)
    assert result["errors"] == [] and result["parameters"]["privateNetworking"] is True
    network = result["network"]
    assert network["private networking"] == "on"
    assert [(e["group"], e["dns zone"], e["to"]) for e in network["private endpoints"]] == [
        ("blob", "privatelink.blob.core.windows.net", "storage.outputs.id"),
        ("table", "privatelink.table.core.windows.net", "storage.outputs.id"),
        ("queue", "privatelink.queue.core.windows.net", "storage.outputs.id"),
        ("vault", "privatelink.vaultcore.azure.net", "keyVault.outputs.id"),
        ("namespace", "privatelink.servicebus.windows.net", "serviceBus.outputs.id"),
    ]
    assert network["public network access"] == {
        "app/keyvault.bicep:vault": "Disabled",
        "app/servicebus.bicep:namespace": "Disabled",
        "app/storage.bicep:storage": "Disabled",
    }
    assert network["app subnet"] == "network.outputs.appSubnetId"
    assert network["route all traffic into the network"] == "true" and network["runtime scale monitoring"] == "true"
    created = {r["resource"]: r["created"] for r in result["resources"] if r["module"] == "app/network.bicep"}
    assert created == {"vnet": "yes", "zones": "yes", "links": "yes", "endpoint": "yes", "zoneGroup": "yes"}


def test_the_dry_run_refuses_private_networking_with_flex_consumption_or_service_bus_standard() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "infra.plan", "--param", "privateNetworking=true"],
        cwd=ROOT,
        env={**ENV, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "refused: module network (app/network.bicep): planSku=FC1 is not one of EP1, EP2, EP3" in run.stderr
    assert "serviceBusSku=Standard is not one of Premium" in run.stderr
    assert run.stdout.startswith("Refused (Azure would fail the deployment)")
    premium_bus = plan(ROOT, environ=ENV, overrides={"privateNetworking": "true", "serviceBusSku": "Premium"})
    assert [e.split(":")[1].strip() for e in premium_bus["errors"]] == ["planSku=FC1 is not one of EP1, EP2, EP3"]
