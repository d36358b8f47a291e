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
        ("AUTH_MODE", "certificate", "'msal' or 'local'"),
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
    assert {name.upper() for name in Settings.model_fields} <= set(values)
    assert load_settings(values).auth_mode == "local"
