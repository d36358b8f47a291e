"""Clients of the connectors under test, pointed at the session simulators (one client per test,
because an httpx.AsyncClient belongs to the event loop that made it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from core.connectors import DataverseClient, FnoClient, LocalTokens
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.fno import FnoSimulator


@pytest.fixture
async def dv(dataverse: DataverseSim) -> AsyncIterator[DataverseClient]:
    async with DataverseClient(dataverse.url, LocalTokens()) as client:
        yield client


@pytest.fixture
async def fo(fno: FnoSimulator) -> AsyncIterator[FnoClient]:
    async with FnoClient(fno.url, LocalTokens()) as client:
        yield client


@pytest.fixture
def unique() -> str:
    """A short suffix so rows of different tests (and runs against a kept simulator) never collide."""
    return uuid.uuid4().hex[:6].upper()
