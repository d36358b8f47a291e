from __future__ import annotations

import json
from datetime import timedelta

import pytest

from devstack.host.config import HostConfigError, load_host_config, resolve_settings_path


def _write(tmp_path, values: dict, host: dict | None = None):
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps(host or {"version": "2.0"}))
    return settings, host_json


KEYS = {"DEVHOST_FUNCTION_KEY": "fk", "DEVHOST_MASTER_KEY": "mk"}


@pytest.fixture(autouse=True)
def _restore_environment():
    """load_host_config exports the settings as environment variables; keep them out of other tests."""
    import os

    saved = dict(os.environ)
    for key in KEYS:
        os.environ.pop(key, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_host_json_service_bus_settings_are_read(tmp_path) -> None:
    settings, host_json = _write(tmp_path, KEYS, {"extensions": {"http": {"routePrefix": "/custom/"}, "serviceBus": {
        "maxConcurrentCalls": 3, "maxConcurrentSessions": 2, "maxMessageBatchSize": 50,
        "autoCompleteMessages": False, "maxAutoLockRenewalDuration": "00:00:30", "sessionIdleTimeout": "00:00:02",
    }}})
    config = load_host_config(settings, host_json)
    assert config.route_prefix == "custom"
    assert (config.servicebus.max_concurrent_calls, config.servicebus.max_concurrent_sessions) == (3, 2)
    assert config.servicebus.max_message_batch_size == 50 and config.servicebus.auto_complete_messages is False
    assert config.servicebus.max_auto_lock_renewal_duration == timedelta(seconds=30)
    assert config.servicebus.session_idle_timeout == timedelta(seconds=2)
    assert (config.function_key, config.master_key) == ("fk", "mk")


def test_defaults_match_the_functions_runtime(tmp_path) -> None:
    config = load_host_config(*_write(tmp_path, KEYS))
    assert config.route_prefix == "api"
    assert config.servicebus.auto_complete_messages is True
    assert config.servicebus.max_concurrent_sessions == 8
    assert config.servicebus.max_auto_lock_renewal_duration == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("service_bus", "message"),
    [
        ({"maxAutoLockRenewalDuration": "5 minutes"}, "maxAutoLockRenewalDuration: '5 minutes' is not a TimeSpan"),
        ({"maxConcurrentCalls": 0}, "maxConcurrentCalls: 0 must be a positive integer"),
        ({"maxMessageBatchSize": "many"}, "maxMessageBatchSize: 'many' must be a positive integer"),
    ],
)
def test_bad_host_json_values_are_named(tmp_path, service_bus: dict, message: str) -> None:
    settings, host_json = _write(tmp_path, KEYS, {"extensions": {"serviceBus": service_bus}})
    with pytest.raises(HostConfigError, match=message):
        load_host_config(settings, host_json)


def test_keys_are_required(tmp_path) -> None:
    with pytest.raises(HostConfigError, match="DEVHOST_FUNCTION_KEY and DEVHOST_MASTER_KEY must be set"):
        load_host_config(*_write(tmp_path, {"DEVHOST_FUNCTION_KEY": "fk"}))


def test_environment_wins_over_the_settings_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEVHOST_MASTER_KEY", "from-env")
    assert load_host_config(*_write(tmp_path, KEYS)).master_key == "from-env"


def test_settings_file_falls_back_to_the_sample(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_settings_path(None).name == "local.settings.sample.json"
    (tmp_path / "local.settings.json").write_text("{}")
    assert resolve_settings_path(None).name == "local.settings.json"
    with pytest.raises(HostConfigError, match="does not exist"):
        resolve_settings_path("nope.json")


def test_unreadable_settings_file_is_named(tmp_path) -> None:
    broken = tmp_path / "local.settings.json"
    broken.write_text("{not json")
    with pytest.raises(HostConfigError, match="cannot read settings file"):
        load_host_config(broken, tmp_path / "host.json")
