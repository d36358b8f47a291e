"""What the local host reads before indexing: local.settings.json Values and host.json."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from devstack.host.timespan import parse_timespan

SAMPLE_SETTINGS = "local.settings.sample.json"


class HostConfigError(ValueError):
    """local.settings.json or host.json is missing, unreadable or has a bad value; the message says which."""


@dataclass(frozen=True)
class ServiceBusOptions:
    """host.json `extensions.serviceBus`, with the Functions runtime's defaults."""

    max_concurrent_calls: int = 16 * (os.cpu_count() or 1)
    max_concurrent_sessions: int = 8
    max_message_batch_size: int = 1000
    auto_complete_messages: bool = True
    max_auto_lock_renewal_duration: timedelta = timedelta(minutes=5)
    session_idle_timeout: timedelta = timedelta(seconds=60)
    prefetch_count: int = 0


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str
    servicebus: ServiceBusOptions
    function_key: str
    master_key: str
    values: dict[str, str]


def resolve_settings_path(requested: str | None) -> Path:
    """`--settings` if given; else local.settings.json, falling back to the committed sample."""
    if requested:
        path = Path(requested)
        if not path.is_file():
            raise HostConfigError(f"settings file {requested!r} does not exist")
        return path
    local = Path("local.settings.json")
    return local if local.is_file() else Path(SAMPLE_SETTINGS)


def read_values(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HostConfigError(f"cannot read settings file {path}: {exc}") from exc
    values = document.get("Values")
    if not isinstance(values, dict):
        raise HostConfigError(f"settings file {path}: 'Values' must be an object of app settings")
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def apply_values(values: dict[str, str]) -> None:
    """Expose app settings as environment variables, as the runtime does. Variables already set in
    the environment win, so a test or a shell can override one setting without editing the file."""
    for key, value in values.items():
        os.environ.setdefault(key, value)


def load_host_config(settings_path: Path, host_json: Path = Path("host.json")) -> HostConfig:
    values = read_values(settings_path)
    apply_values(values)
    document: dict[str, Any] = {}
    if host_json.is_file():
        try:
            document = json.loads(host_json.read_text())
        except json.JSONDecodeError as exc:
            raise HostConfigError(f"host.json is not valid JSON: {exc}") from exc
    extensions = document.get("extensions", {})
    route_prefix = str(extensions.get("http", {}).get("routePrefix", "api")).strip("/")
    function_key = os.environ.get("DEVHOST_FUNCTION_KEY", "")
    master_key = os.environ.get("DEVHOST_MASTER_KEY", "")
    if not function_key or not master_key:
        raise HostConfigError(f"settings file {settings_path}: DEVHOST_FUNCTION_KEY and DEVHOST_MASTER_KEY must be set")
    return HostConfig(
        route_prefix=route_prefix,
        servicebus=_servicebus_options(extensions.get("serviceBus", {})),
        function_key=function_key,
        master_key=master_key,
        values=values,
    )


def _servicebus_options(raw: dict[str, Any]) -> ServiceBusOptions:
    defaults = ServiceBusOptions()

    def duration(key: str, default: timedelta) -> timedelta:
        if key not in raw:
            return default
        value = parse_timespan(str(raw[key]))
        if value is None:
            raise HostConfigError(f"host.json extensions.serviceBus.{key}: {raw[key]!r} is not a TimeSpan hh:mm:ss")
        return value

    def positive(key: str, default: int) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int) or value < (0 if key == "prefetchCount" else 1):
            raise HostConfigError(f"host.json extensions.serviceBus.{key}: {value!r} must be a positive integer")
        return value

    return ServiceBusOptions(
        max_concurrent_calls=positive("maxConcurrentCalls", defaults.max_concurrent_calls),
        max_concurrent_sessions=positive("maxConcurrentSessions", defaults.max_concurrent_sessions),
        max_message_batch_size=positive("maxMessageBatchSize", defaults.max_message_batch_size),
        auto_complete_messages=bool(raw.get("autoCompleteMessages", True)),
        max_auto_lock_renewal_duration=duration("maxAutoLockRenewalDuration", defaults.max_auto_lock_renewal_duration),
        session_idle_timeout=duration("sessionIdleTimeout", defaults.session_idle_timeout),
        prefetch_count=positive("prefetchCount", defaults.prefetch_count),
    )
