from pathlib import Path

import pytest

from core.maps import MapSet

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "maps"


@pytest.fixture(scope="session")
def shipped() -> MapSet:
    return MapSet.load([SHIPPED])
