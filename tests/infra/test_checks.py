"""The repository as it is passes every infrastructure check (tests/infra/test_broken.py shows each can fail)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import checks
from infra.model import Deployment, parse

ROOT = Path(__file__).resolve().parents[2]


def test_every_bicep_file_is_parsed_by_a_real_bicep_parser() -> None:
    files = sorted((ROOT / "infra").rglob("*.bicep"))
    assert len(files) >= 7
    for path in files:
        doc = parse(path)
        assert doc.get("resources") or doc.get("modules"), f"{path} declares nothing"


@pytest.mark.parametrize("name", sorted(checks.ALL))
def test_the_code_and_the_infrastructure_agree(name: str) -> None:
    assert checks.ALL[name](ROOT) == []


def test_main_uses_one_module_per_resource_family() -> None:
    deployment = Deployment.load(ROOT)
    assert set(deployment.modules) == {
        "main.bicep",
        "app/identity.bicep",
        "app/monitoring.bicep",
        "app/storage.bicep",
        "app/servicebus.bicep",
        "app/keyvault.bicep",
        "app/function-app.bicep",
        "app/network.bicep",
    }
    types = {r.type for r in deployment.resources()}
    assert {
        "Microsoft.Web/sites",
        "Microsoft.Web/serverfarms",
        "Microsoft.ServiceBus/namespaces/queues",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.KeyVault/vaults",
        "Microsoft.Insights/components",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    } <= types


def test_the_flex_plan_runs_python_3_11_from_a_blob_container_reached_by_the_identity() -> None:
    app = Deployment.load(ROOT).module("function-app.bicep")
    site = next(r for r in app.resources() if r.type == "Microsoft.Web/sites")
    config = site.properties["functionAppConfig"]["operator"]["operands"]["true_value"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert config["scaleAndConcurrency"] == {
        "instanceMemoryMB": "instanceMemoryMB",
        "maximumInstanceCount": "maximumInstanceCount",
    }
    plan = app.parameters()
    assert plan["planSku"]["default"] == "FC1" and "EP1" in plan["planSku"]["decorators"][0]["argument"]


def test_every_app_setting_the_engine_reads_is_in_the_sample_file_and_in_bicep() -> None:
    """The three lists of names (code, local sample, Azure) are one list, up to the documented exceptions."""
    fields = checks.engine_settings(ROOT)
    app = {name.upper() for name in Deployment.load(ROOT).app_settings()}
    optional = checks.optional_settings(ROOT)
    missing = [
        n
        for n in fields
        if "__" not in n and checks.IDENTITY_SETTING.get(n, n).upper() not in app and n not in optional
    ]
    assert missing == []
    assert {
        "ALERT_SMTP_PASSWORD",
        "TELEMETRY_ENABLED",
        "SWEEP_ENABLED",
        "APPLY_MAX_ATTEMPTS",
        "METRICS_FLUSH_SECONDS",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
        "OTEL_LOGS_EXPORTER",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    } <= app


def test_the_checks_run_from_the_command_line_and_fail_on_a_broken_copy(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from tests.infra.conftest import CHECKED, edit

    ok = subprocess.run([sys.executable, "-m", "infra.checks"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "settings: ok" in ok.stdout
    for relative in CHECKED:  # a copy whose infra/checks.py reads the copy
        source, target = ROOT / relative, tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    edit(tmp_path / "infra/app/servicebus.bicep", "maxDeliveryCount: 10", "maxDeliveryCount: 3")
    broken = subprocess.run(
        [sys.executable, "-m", "infra.checks"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert broken.returncode == 1 and "queues: " in broken.stdout and "maxDeliveryCount is 3" in broken.stdout


def test_private_networking_is_an_option_off_by_default_for_elastic_premium_and_service_bus_premium() -> None:
    deployment = Deployment.load(ROOT)
    assert deployment.main.parameters()["privateNetworking"]["default"] is False
    network = deployment.modules["app/network.bicep"]
    types = {r.type for r in network.resources()}
    assert {
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/privateEndpoints",
        "Microsoft.Network/privateEndpoints/privateDnsZoneGroups",
        "Microsoft.Network/privateDnsZones",
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
    } <= types
    groups = {e["groupId"]: e["zone"] for e in network.variables()["endpoints"]}
    assert groups == {
        "blob": "privatelink.blob.core.windows.net",
        "table": "privatelink.table.core.windows.net",
        "queue": "privatelink.queue.core.windows.net",
        "vault": "privatelink.vaultcore.azure.net",
        "namespace": "privatelink.servicebus.windows.net",
    }
    allowed = {
        name: spec["decorators"][0]["argument"] for name, spec in network.parameters().items() if name.endswith("Sku")
    }
    assert allowed == {"planSku": ["EP1", "EP2", "EP3"], "serviceBusSku": ["Premium"]}
    parameters = (ROOT / "infra/main.parameters.json").read_text()
    assert '"privateNetworking": { "value": "${PRIVATE_NETWORKING=false}" }' in parameters
