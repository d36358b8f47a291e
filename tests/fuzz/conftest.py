"""One local host for the fuzz package: the ingest functions and health (fuzz_app.py) over the session's emulator
and Azurite, with a changes queue of its own."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import ServiceBusEmulator

FUZZ_APP = "tests.fuzz.fuzz_app:app"
UNUSED_URL = "http://127.0.0.1:9"  # ingest never calls Dataverse or F&O


@pytest.fixture(scope="package")
def fuzz_host(devhost: Any, servicebus_emulator: ServiceBusEmulator, azurite: str) -> RunningHost:
    host: RunningHost = devhost(
        FUZZ_APP, SERVICEBUS_CONNECTION=servicebus_emulator.connection_string, TABLE_STORAGE_CONNECTION=azurite,
        CHANGES_QUEUE=servicebus_emulator.take("changes"), FNO_EVENTS_QUEUE=servicebus_emulator.take("plain"),
        DATAVERSE_URL=UNUSED_URL, FNO_URL=UNUSED_URL, DEPLOY_ON_START="false", LOG_LEVEL="WARNING")
    return host
