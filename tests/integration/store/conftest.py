"""Each test gets its own set of tables (a fresh prefix) in the session's Azurite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from core.store.tables import Tables


@pytest.fixture
async def tables(azurite: str) -> AsyncIterator[Tables]:
    store = Tables(azurite, prefix=f"t{uuid.uuid4().hex[:10]}")
    try:
        yield store
    finally:
        await store.close()
