"""Each check fails on a deliberately broken copy of the repository, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

from infra import checks
from tests.infra.conftest import edit


def test_a_renamed_queue_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/servicebus.bicep", "name: 'changes'", "name: 'changes-v2'")
    problems = checks.queues(repo)
    assert any("queue changes:" in p and "not in infra/app/servicebus.bicep" in p for p in problems)
    assert any("CHANGES_QUEUE" in p and "not created by Bicep" in p for p in problems)
    assert any("apply.py:apply_changes" in p for p in problems)


def test_a_queue_renamed_in_the_code_only_is_reported(repo: Path) -> None:
    edit(repo / "core/settings.py", 'changes_queue: str = Field("changes"', 'changes_queue: str = Field("updates"')
    assert any("'updates'" in p for p in checks.queues(repo))


def test_a_session_trigger_on_a_queue_without_sessions_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/servicebus.bicep", "requiresSession: true", "requiresSession: false")
    problems = checks.queues(repo)
    assert any("is_sessions_enabled=True but queue changes has requiresSession=False" in p for p in problems)
    assert any("requiresSession is False in Bicep, True in the local topology" in p for p in problems)


def test_a_changed_queue_property_is_reported(repo: Path) -> None:
    edit(repo / "devstack/servicebus/topology.json", '"LockDuration": "PT1M"', '"LockDuration": "PT2M"')
    edit(repo / "infra/app/servicebus.bicep", "maxDeliveryCount: 10", "maxDeliveryCount: 5")
    edit(repo / "infra/app/servicebus.bicep", "defaultMessageTimeToLive: 'P14D'", "defaultMessageTimeToLive: 'PT5M'")
    problems = checks.queues(repo)
    assert any("queue changes: lockDuration is 'PT1M' in Bicep, 'PT2M'" in p for p in problems)
    assert any("maxDeliveryCount 5 must exceed APPLY_MAX_ATTEMPTS's maximum 9" in p for p in problems)
    assert any("TTL PT5M in Azure is shorter than the local PT1H" in p for p in problems)


def test_host_json_without_opentelemetry_mode_is_reported(repo: Path) -> None:
    edit(repo / "host.json", '"telemetryMode": "OpenTelemetry",', "")
    assert any("telemetryMode" in p for p in checks.queues(repo))


def test_a_missing_setting_is_reported(repo: Path) -> None:
    edit(repo / "infra/main.bicep", "  SWEEP_INTERVAL_SECONDS: string(sweepIntervalSeconds)\n", "")
    assert checks.settings(repo) == [
        "SWEEP_INTERVAL_SECONDS: read by core/settings.py but not set in infra/main.bicep's appSettings (nor listed "
        "in infra/README.md as left at its default)",
        "SWEEP_INTERVAL_SECONDS: in local.settings.sample.json but not in Bicep (nor a local-only setting)",
    ]


def test_a_new_engine_setting_without_infrastructure_is_reported(repo: Path) -> None:
    edit(
        repo / "core/settings.py",
        "    maps_path: str = Field(",
        '    retry_jitter: float = Field(0.1, description="new")\n    maps_path: str = Field(',
    )
    problems = checks.settings(repo)
    assert any(p.startswith("RETRY_JITTER: read by core/settings.py but not set") for p in problems)


def test_a_setting_nobody_reads_and_a_drifted_default_are_reported(repo: Path) -> None:
    edit(repo / "infra/main.bicep", "  LOG_LEVEL: logLevel\n", "  LOG_LEVEL: logLevel\n  LOG_LEVL: 'INFO'\n")
    edit(repo / "infra/main.bicep", "param sweepIntervalSeconds int = 60", "param sweepIntervalSeconds int = 600")
    problems = checks.settings(repo)
    assert any(p.startswith("LOG_LEVL: set in Bicep but read neither") for p in problems)
    assert any("sweepIntervalSeconds defaults to 600, core/settings.py to 60" in p for p in problems)


def test_a_sample_setting_missing_from_bicep_is_reported(repo: Path) -> None:
    edit(repo / "local.settings.sample.json", '"LOG_LEVEL": "INFO",', '"LOG_LEVEL": "INFO",\n    "EXTRA_KNOB": "1",')
    assert any(
        p.startswith("EXTRA_KNOB: in local.settings.sample.json but not in Bicep") for p in checks.settings(repo)
    )


def test_a_connection_string_with_a_key_in_app_settings_is_reported(repo: Path) -> None:
    edit(
        repo / "infra/main.bicep",
        "  CHANGES_QUEUE: 'changes'\n",
        "  SERVICEBUS_CONNECTION: 'Endpoint=sb://${serviceBus.outputs.name}.servicebus.windows.net/;"
        "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${sbKey}'\n  CHANGES_QUEUE: 'changes'\n",
    )
    problems = checks.secrets(repo)
    assert any(p.startswith("SERVICEBUS_CONNECTION: a key or password in a plain app setting") for p in problems)
    assert any(p.startswith("SERVICEBUS_CONNECTION: a connection string in Azure") for p in problems)


def test_a_storage_key_from_list_keys_is_reported(repo: Path) -> None:
    edit(
        repo / "infra/main.bicep",
        "  MAPS_PATH: 'maps'\n",
        "  MAPS_PATH: 'maps'\n  AzureWebJobsStorage: storageAccount.listKeys().keys[0].value\n",
    )
    problems = checks.secrets(repo)
    assert any("AzureWebJobsStorage: built with list" in p for p in problems), problems


def test_a_plain_secret_setting_is_reported(repo: Path) -> None:
    edit(repo / "infra/main.bicep", "  INGEST_KEY: ingestKeyReference\n", "  INGEST_KEY: ingestKey\n")
    edit(
        repo / "infra/main.bicep",
        "  ALERT_SMTP_PASSWORD: hasSmtpPassword ? smtpPasswordReference : ''\n",
        "  ALERT_SMTP_PASSWORD: 'hunter2'\n",
    )
    problems = checks.secrets(repo)
    assert any(p.startswith("INGEST_KEY: takes the secure parameter ingestKey directly") for p in problems)
    assert "ALERT_SMTP_PASSWORD: a secret setting must be a Key Vault reference (or empty)" in problems


def test_local_auth_left_on_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/servicebus.bicep", "disableLocalAuth: true", "disableLocalAuth: false")
    edit(repo / "infra/app/storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAccess: true")
    problems = checks.secrets(repo)
    assert any("namespace must set disableLocalAuth: true" in p for p in problems)
    assert any("storage must set allowSharedKeyAccess: false" in p for p in problems)


def test_a_secret_written_into_the_parameters_file_is_reported(repo: Path) -> None:
    edit(repo / "infra/main.parameters.json", '"${CLIENT_SECRET=}"', '"my-client-secret"')
    assert any("clientSecret is secure" in p for p in checks.secrets(repo))


def test_a_missing_role_is_reported(repo: Path) -> None:
    bicep = repo / "infra/app/storage.bicep"
    text = bicep.read_text()
    start = text.index("resource tableContributor")
    bicep.write_text(text[:start] + text[text.index("\n}\n", start) + 3 :])
    assert checks.roles(repo) == [
        "no role assignment for the engine's tables (core/store/tables.py): needs Storage Table Data Contributor"
    ]


def test_listen_only_service_bus_rights_are_reported(repo: Path) -> None:
    bicep = repo / "infra/app/servicebus.bicep"
    text = bicep.read_text()
    for symbol in ("resource owner", "resource sender"):
        start = text.index(symbol)
        text = text[:start] + text[text.index("\n}\n", start) + 3 :]
    bicep.write_text(text)
    problems = checks.roles(repo)
    assert any("queue depth" in p and "Azure Service Bus Data Owner" in p for p in problems)
    assert any("sending and receiving" in p for p in problems)


def test_invalid_bicep_is_reported_with_its_file(repo: Path) -> None:
    edit(
        repo / "infra/app/keyvault.bicep",
        "resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {",
        "resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {{",
    )
    problems = checks.parses(repo)
    assert len(problems) == 1 and "keyvault.bicep: not valid Bicep" in problems[0]


def test_a_module_given_a_parameter_it_lacks_is_reported(repo: Path) -> None:
    edit(
        repo / "infra/main.bicep",
        "    grantDataOwner: serviceBusDataOwner\n",
        "    grantDataOwner: serviceBusDataOwner\n    partitions: 4\n",
    )
    edit(
        repo / "infra/main.bicep",
        "    deploymentContainerName: deploymentContainerName\n    privateNetworking: privateNetworking\n  }\n}\n\n"
        "module serviceBus",
        "    privateNetworking: privateNetworking\n  }\n}\n\nmodule serviceBus",
    )
    problems = checks.parses(repo)
    assert "main.bicep: module serviceBus passes partitions, which app/servicebus.bicep does not declare" in problems
    assert "main.bicep: module storage does not pass deploymentContainerName, required by app/storage.bicep" in problems


def test_a_route_under_a_reserved_prefix_is_reported(repo: Path) -> None:
    edit(repo / "functions/admin.py", 'route="manage/v1/errors"', 'route="admin/errors"')
    assert checks.routes(repo) == [
        "admin.py: route 'admin/errors' starts with 'admin', which Azure reserves (it will not load)"
    ]


def test_an_output_url_that_is_no_route_is_reported(repo: Path) -> None:
    edit(repo / "functions/ingest.py", 'route="dataverse/webhook"', 'route="dataverse/hook"')
    assert checks.routes(repo) == [
        "main.bicep output DATAVERSE_WEBHOOK_URL: /api/dataverse/webhook is no route of the app"
    ]


def test_an_allowed_value_the_engine_refuses_is_reported(repo: Path) -> None:
    edit(repo / "infra/main.bicep", "@allowed(['jobs', 'changes', 'both'])", "@allowed(['jobs', 'changes', 'all'])")
    assert checks.settings(repo) == [
        "SWEEP_DATAVERSE: Bicep parameter sweepDataverse allows ['all'], which core/settings.py refuses"
    ]


def test_a_runtime_the_plan_or_the_code_does_not_take_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/function-app.bicep", "version: '3.11'", "version: '3.13'")
    edit(repo / "host.json", '"version": "[4.*, 5.0.0)"', '"version": "[3.*, 4.0.0)"')
    problems = checks.hosting(repo)
    assert "function-app.bicep: Flex Consumption runs Python 3.10, 3.11, 3.12, not '3.13'" in problems
    assert "function-app.bicep: Elastic Premium runs 'Python|3.11', Flex Consumption Python 3.13" in problems
    assert any("extension bundle '[3.*, 4.0.0)'" in p for p in problems)


def test_an_azure_yaml_that_misses_the_app_is_reported(repo: Path) -> None:
    edit(repo / "azure.yaml", "  engine:", "  api:")
    edit(repo / "azure.yaml", "run: python3 infra/hooks/postprovision.py", "run: python3 infra/hooks/after.py")
    problems = checks.hosting(repo)
    assert "azure.yaml: no service 'engine', the azd-service-name the Function App is tagged with" in problems
    assert "azure.yaml: hook postprovision runs infra/hooks/after.py, which does not exist" in problems


def test_a_secret_in_an_output_is_reported(repo: Path) -> None:
    edit(
        repo / "infra/app/keyvault.bicep",
        "output name string = vault.name",
        "output name string = vault.name\noutput key string = '${ingestKey}'",
    )
    edit(
        repo / "infra/app/storage.bicep",
        "output name string = storage.name",
        "output name string = storage.name\noutput accountKey string = storage.listKeys().keys[0].value",
    )
    problems = checks.secrets(repo)
    assert "app/keyvault.bicep: output key gives away a secret" in problems
    assert "app/storage.bicep: output accountKey gives away a secret" in problems


def _cut(path: Path, start_text: str) -> None:
    """Remove the declaration that starts with `start_text` (up to its closing brace at column 0)."""
    text = path.read_text()
    start = text.index(start_text)
    end = text.index("\n}", start)
    end = text.index("\n", end + 2) + 1 if text[end + 2 : end + 3] == "]" else end + 3
    path.write_text(text[:start] + text[end:])


def test_a_private_endpoint_without_its_dns_zone_group_is_reported(repo: Path) -> None:
    _cut(repo / "infra/app/network.bicep", "resource zoneGroup")
    assert checks.network(repo) == [
        "app/network.bicep: private endpoint endpoint has no DNS zone group (its address would not be in the private "
        "DNS zone: the app would resolve the public one, which is closed)"
    ]


def test_a_private_dns_zone_linked_to_no_network_and_a_wrong_zone_are_reported(repo: Path) -> None:
    _cut(repo / "infra/app/network.bicep", "resource links")
    edit(
        repo / "infra/app/network.bicep",
        "zone: 'privatelink.vaultcore.azure.net'",
        "zone: 'privatelink.vault.azure.net'",
    )
    problems = checks.network(repo)
    assert "app/network.bicep: private DNS zone zones is linked to no virtual network" in problems
    assert any("endpoint vault (vault) uses zone 'privatelink.vault.azure.net'" in p for p in problems)


def test_public_network_access_left_on_behind_a_private_endpoint_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/storage.bicep", "publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'", "")
    edit(repo / "infra/app/servicebus.bicep", "privateNetworking ? 'Disabled' : 'Enabled'", "'Enabled'")
    edit(
        repo / "infra/main.bicep",
        "    alertSmtpPassword: alertSmtpPassword\n    privateNetworking: privateNetworking\n",
        "    alertSmtpPassword: alertSmtpPassword\n",
    )
    problems = checks.network(repo)
    assert len(problems) == 3, problems
    assert any(p.startswith("app/storage.bicep: storage has a private endpoint but keeps public") for p in problems)
    assert any(p.startswith("app/servicebus.bicep: namespace has a private endpoint") for p in problems)
    assert any(p.startswith("app/keyvault.bicep: vault has a private endpoint") for p in problems)  # not passed


def test_private_networking_allowed_with_flex_consumption_or_service_bus_standard_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/network.bicep", "@allowed(['EP1', 'EP2', 'EP3'])", "@allowed(['FC1', 'EP1', 'EP2', 'EP3'])")
    edit(repo / "infra/app/network.bicep", "@allowed(['Premium'])", "@allowed(['Standard', 'Premium'])")
    edit(repo / "infra/main.bicep", "param privateNetworking bool = false", "param privateNetworking bool = true")
    problems = checks.network(repo)
    assert "main.bicep: privateNetworking must default to false (private networking is an option)" in problems
    assert any(p.startswith("app/network.bicep: planSku must be main.bicep's and @allowed EP1-EP3") for p in problems)
    assert any(
        p.startswith("app/network.bicep: serviceBusSku must be main.bicep's and @allowed Premium") for p in problems
    )
    assert len(problems) == 3, problems


def test_an_app_outside_the_network_is_reported(repo: Path) -> None:
    edit(repo / "infra/app/function-app.bicep", "      vnetRouteAllEnabled: integrated ? true : null\n", "")
    edit(
        repo / "infra/app/function-app.bicep",
        "      functionsRuntimeScaleMonitoringEnabled: integrated ? true : null\n",
        "",
    )
    edit(
        repo / "infra/app/network.bicep",
        "serviceName: 'Microsoft.Web/serverFarms'",
        "serviceName: 'Microsoft.App/environments'",
    )
    edit(
        repo / "infra/main.bicep",
        "module network 'app/network.bicep' = if (privateNetworking) {",
        "module network 'app/network.bicep' = {",
    )
    problems = checks.network(repo)
    assert "main.bicep: module network must deploy only if (privateNetworking)" in problems
    assert (
        "app/network.bicep: no subnet delegated to Microsoft.Web/serverFarms for the app's VNet integration" in problems
    )
    assert any(p.startswith("app/function-app.bicep: siteConfig sets no vnetRouteAllEnabled") for p in problems)
    assert any("no functionsRuntimeScaleMonitoringEnabled" in p for p in problems)
    assert len(problems) == 4, problems
