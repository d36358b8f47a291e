import pytest

from tests.unit.sync.world import World, build_world


@pytest.fixture
def world() -> World:
    return build_world()
