"""The Dataverse simulator tests' own simulator and a local webhook receiver (registration itself goes through
devstack.dataverse.registration, the Web API way)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.dataverse import DataverseSim, running_dataverse
from tests.fixtures.http_receiver import HttpReceiver, serve


@pytest.fixture(scope="package")
def dataverse() -> Iterator[DataverseSim]:
    """This folder's own simulator (overrides the session one here): these tests write many rows and
    register webhooks, and other folders' tests should find the seed data untouched."""
    with running_dataverse() as sim:
        yield sim


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    with serve(HttpReceiver()) as running:
        yield running
