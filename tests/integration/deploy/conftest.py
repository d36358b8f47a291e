"""Own simulators for the deployment tests (they register webhook steps and event activations, which
other folders' tests must not inherit) and a local HTTP receiver standing in for the Function App."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.fixtures.http_receiver import HttpReceiver, serve


@pytest.fixture(scope="package")
def app_stand_in() -> Iterator[HttpReceiver]:
    """Stands in for the Function App: answers 202 to every POST, as the ingest functions do."""
    with serve(HttpReceiver(default=(202, 0.0))) as running:
        yield running


@pytest.fixture(scope="package")
def dataverse() -> Iterator[DataverseSim]:
    sim = start_dataverse()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="package")
def fno() -> Iterator[FnoSimulator]:
    sim = start_fno("fno-deploy")
    try:
        yield sim
    finally:
        sim.process.stop()
