"""Clients for the F&O simulator tests (the simulator itself comes from tests/fixtures/fno.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.fno import FnoSimulator


@pytest.fixture(scope="module")
def odata(fno: FnoSimulator) -> Iterator[httpx.Client]:
    """An authenticated client whose base URL is the OData service root."""
    with httpx.Client(base_url=fno.data_url, headers=fno.headers(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def admin(fno: FnoSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fno.admin_url, timeout=30) as client:
        yield client
