"""Settings: every problem named by its environment variable, secrets never echoed."""

from __future__ import annotations

import pytest

from core.settings import SettingsError, load_settings

EMULATOR = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;SharedAccessKey=SECRET-SB;UseDevelopmentEmulator=true"
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=SECRET-TABLES;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
VALID = {
    "TABLE_STORAGE_CONNECTION": AZURITE,
    "SERVICEBUS_CONNECTION": EMULATOR,
    "DATAVERSE_URL": "http://127.0.0.1:7101",
    "FNO_URL": "http://127.0.0.1:7102",
    "AUTH_MODE": "local",
}


def _problems(env: dict[str, str]) -> dict[str, str]:
    with pytest.raises(SettingsError) as failed:
        load_settings(env)
    return failed.value.problems


def test_valid_local_settings_load_with_defaults() -> None:
    settings = load_settings(VALID)
    assert settings.changes_queue == "changes" and settings.sync_pages_queue == "sync-pages"
    assert str(settings.dataverse_url) == "http://127.0.0.1:7101/"
    assert settings.servicebus_connection.get_secret_value() == EMULATOR


def test_names_are_case_insensitive_like_app_settings() -> None:
    assert load_settings({k.lower(): v for k, v in VALID.items()}).auth_mode == "local"


def test_every_missing_required_setting_is_named() -> None:
    assert _problems({}) == {
        "TABLE_STORAGE_CONNECTION": "is missing",
        "SERVICEBUS_CONNECTION": "is missing",
        "DATAVERSE_URL": "is missing",
        "FNO_URL": "is missing",
    }


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SERVICEBUS_CONNECTION", "Endpoint=https://x;SharedAccessKey=k", "Endpoint=sb://"),
        ("SERVICEBUS_CONNECTION", "Endpoint=sb://ns.servicebus.windows.net/", "SharedAccessKey"),
        ("SERVICEBUS_CONNECTION", "not a connection string", "Key=Value"),
        ("TABLE_STORAGE_CONNECTION", "AccountName=a", "AccountKey"),
        ("TABLE_STORAGE_CONNECTION", "AccountName=a;AccountKey=k", "TableEndpoint"),
        ("DATAVERSE_URL", "org.crm.dynamics.com", "URL"),
        ("DATAVERSE_URL", "https://org.crm.dynamics.com/api/data/v9.2", "root URL only"),
        ("FNO_URL", "https://env.operations.dynamics.com/data", "root URL only"),
        ("AUTH_MODE", "certificate", "'msal', 'identity' or 'local'"),
        ("CHANGES_QUEUE", "", "at least 1 character"),
        ("LOG_LEVEL", "LOUD", "DEBUG"),
    ],
)
def test_a_malformed_setting_is_named_with_what_is_wrong(name: str, value: str, fragment: str) -> None:
    problems = _problems({**VALID, name: value})
    assert list(problems) == [name]
    assert problems[name].startswith("is malformed") and fragment in problems[name]


def test_msal_mode_needs_its_credentials() -> None:
    problems = _problems({**VALID, "AUTH_MODE": "msal", "TENANT_ID": "t"})
    assert problems == {"AUTH_MODE": "AUTH_MODE=msal needs CLIENT_ID, CLIENT_SECRET"}
    full = {**VALID, "AUTH_MODE": "msal", "TENANT_ID": "t", "CLIENT_ID": "c", "CLIENT_SECRET": "s3cret"}
    assert load_settings(full).client_secret.get_secret_value() == "s3cret"


def test_secrets_never_appear_in_errors_or_reprs() -> None:
    with pytest.raises(SettingsError) as failed:
        load_settings({**VALID, "SERVICEBUS_CONNECTION": "Endpoint=https://x;SharedAccessKey=SECRET-SB", "FNO_URL": ""})
    assert "SECRET" not in str(failed.value)
    assert "SECRET" not in repr(load_settings(VALID))


def test_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHANGES_QUEUE", "changes-2")
    assert load_settings().changes_queue == "changes-2"


def test_the_sample_settings_file_is_valid_and_complete() -> None:
    """local.settings.sample.json must hold every setting the engine reads, with working local values."""
    import json
    from pathlib import Path

    from core.settings import Settings

    values = json.loads((Path(__file__).parents[2] / "local.settings.sample.json").read_text())["Values"]
    # names compare without case, like app settings (SERVICEBUS_CONNECTION__fullyQualifiedNamespace)
    assert {name.upper() for name in Settings.model_fields} <= {name.upper() for name in values}
    assert load_settings(values).auth_mode == "local"


# ---- identity-based connections (Azure: no connection string, the app's managed identity) ----

AZURE_IDENTITY = {
    "SERVICEBUS_CONNECTION__fullyQualifiedNamespace": "sb-dw.servicebus.windows.net",
    "SERVICEBUS_CONNECTION__credential": "managedidentity",
    "SERVICEBUS_CONNECTION__clientId": "11111111-2222-3333-4444-555555555555",
    "TABLE_STORAGE_CONNECTION__tableServiceUri": "https://stdw.table.core.windows.net/",
    "TABLE_STORAGE_CONNECTION__credential": "managedidentity",
    "TABLE_STORAGE_CONNECTION__clientId": "11111111-2222-3333-4444-555555555555",
    "DATAVERSE_URL": "https://org.crm.dynamics.com",
    "FNO_URL": "https://env.operations.dynamics.com",
    "AUTH_MODE": "identity",
}


def test_identity_settings_make_the_connections_when_no_string_is_set() -> None:
    from core.settings import parse_connection_string

    settings = load_settings(AZURE_IDENTITY)
    bus = parse_connection_string(settings.servicebus_connection.get_secret_value())
    tables = parse_connection_string(settings.table_storage_connection.get_secret_value())
    assert bus == {"fullyqualifiednamespace": "sb-dw.servicebus.windows.net", "credential": "managedidentity",
                   "clientid": "11111111-2222-3333-4444-555555555555"}
    assert tables["tableserviceuri"] == "https://stdw.table.core.windows.net/"
    assert settings.auth_mode == "identity" and settings.client_secret is None  # identity mode needs no secret


def test_identity_settings_are_read_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AZURE_IDENTITY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SERVICEBUS_CONNECTION", raising=False)
    monkeypatch.delenv("TABLE_STORAGE_CONNECTION", raising=False)
    assert "sb-dw.servicebus.windows.net" in load_settings().servicebus_connection.get_secret_value()


def test_an_account_name_alone_makes_the_table_endpoint() -> None:
    env = {k: v for k, v in AZURE_IDENTITY.items() if not k.startswith("TABLE_STORAGE_CONNECTION")}
    env["TABLE_STORAGE_CONNECTION__accountName"] = "stdw"
    connection = load_settings(env).table_storage_connection.get_secret_value()
    assert connection == "TableServiceUri=https://stdw.table.core.windows.net"


def test_a_connection_string_wins_over_identity_settings() -> None:
    settings = load_settings({**AZURE_IDENTITY, "SERVICEBUS_CONNECTION": EMULATOR, "TABLE_STORAGE_CONNECTION": AZURITE})
    assert settings.servicebus_connection.get_secret_value() == EMULATOR
    assert settings.table_storage_connection.get_secret_value() == AZURITE


def test_empty_identity_settings_leave_a_connection_missing() -> None:
    env = {**VALID, "SERVICEBUS_CONNECTION": "", "SERVICEBUS_CONNECTION__fullyQualifiedNamespace": "",
           "SERVICEBUS_CONNECTION__clientId": "x"}
    assert _problems(env) == {"SERVICEBUS_CONNECTION": "is malformed: needs Endpoint=sb://<namespace>/ (and "
                              "SharedAccessKey..., or UseDevelopmentEmulator=true)"}


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SERVICEBUS_CONNECTION__fullyQualifiedNamespace", "sb://sb-dw.servicebus.windows.net/", "host name"),
        ("TABLE_STORAGE_CONNECTION__tableServiceUri", "http://stdw.table.core.windows.net", "https://"),
    ],
)
def test_a_malformed_identity_setting_is_named_by_its_connection(name: str, value: str, fragment: str) -> None:
    problems = _problems({**AZURE_IDENTITY, name: value})
    connection = name.split("__")[0]
    assert list(problems) == [connection] and fragment in problems[connection]


def test_the_clients_take_identity_connections_without_a_key() -> None:
    """The real SDK clients are made with the endpoint and an azure-identity credential (nothing is sent)."""
    from azure.identity.aio import ManagedIdentityCredential

    from core.store.bus import service_bus_client
    from core.store.credentials import credential
    from core.store.tables import table_service_client

    settings = load_settings(AZURE_IDENTITY)
    bus = service_bus_client(settings.servicebus_connection.get_secret_value())
    assert bus.fully_qualified_namespace == "sb-dw.servicebus.windows.net"
    tables = table_service_client(settings.table_storage_connection.get_secret_value())
    assert tables.url.startswith("https://stdw.table.core.windows.net")
    assert isinstance(credential("11111111-2222-3333-4444-555555555555", "managedidentity"), ManagedIdentityCredential)
    # the same identity is one credential (one token cache) in the process
    assert credential("c", "managedidentity") is credential("c", "managedidentity")


def test_the_queue_depth_reader_takes_an_identity_connection() -> None:
    """Identity-based: not the emulator, and the management client is made for the namespace (nothing is sent)."""
    from azure.servicebus.aio.management import ServiceBusAdministrationClient

    from core.store.queuedepth import QueueDepthReader

    reader = QueueDepthReader(load_settings(AZURE_IDENTITY).servicebus_connection.get_secret_value(), "changes")
    assert reader.emulator is False
    client = reader._admin_client()
    assert isinstance(client, ServiceBusAdministrationClient)
    assert client.fully_qualified_namespace == "sb-dw.servicebus.windows.net"
    assert QueueDepthReader(EMULATOR, "changes").emulator is True  # the connection-string path as before
