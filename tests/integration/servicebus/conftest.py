"""SDK clients bound to the session's emulator (tests/fixtures/servicebus.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from azure.servicebus import ServiceBusClient
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient

from tests.fixtures.servicebus import ServiceBusEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
def client(servicebus_emulator: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as sb:
        yield sb


@pytest.fixture
async def aclient(servicebus_emulator: ServiceBusEmulator) -> AsyncIterator[AsyncServiceBusClient]:
    async with AsyncServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as sb:
        yield sb
