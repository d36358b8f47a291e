"""Maps changed under a running host: a map file gaining a mapped column takes effect without a restart
(within MAPS_CHECK_SECONDS), and an invalid edit keeps the running version and says why.

Its own stack, over a copy of the shipped maps (the test edits them)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Stack,
    account_column,
    change_customer,
    eventually,
    maps_loaded,
    new_customer,
    running_stack,
)
from tests.fixtures.devhost import RunningHost

MAPS = Path(__file__).parents[2] / "maps"


@pytest.fixture(scope="module")
def maps_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("maps")
    for path in MAPS.glob("*.json"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def reload_stack(azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost],
                 maps_copy: Path) -> Iterator[Stack]:
    with running_stack(azurite, servicebus_emulator, devhost, MAPS_PATH=str(maps_copy)) as stack:
        yield stack


def test_a_map_file_changed_under_a_running_host_takes_effect_without_a_restart(
        reload_stack: Stack, maps_copy: Path) -> None:
    stack = reload_stack
    account = f"R{uuid.uuid4().hex[:6].upper()}"
    new_customer(stack, account, OrganizationName="Reload Ltd", NameAlias="before")
    assert account_column(stack, account, "websiteurl") is None  # NameAlias is not mapped yet
    loaded = maps_loaded(stack)["maps_loaded_at"]

    path = maps_copy / "customers.json"
    definition = json.loads(path.read_text())
    definition["fields"].append({"fno": "NameAlias", "dataverse": "websiteurl", "direction": "both", "type": "string"})
    path.write_text(json.dumps(definition, indent=2))
    eventually(lambda: maps_loaded(stack)["maps_loaded_at"] != loaded, timeout=90, what="the host reloading its maps")
    assert maps_loaded(stack)["maps_problem"] is None

    change_customer(stack, account, NameAlias="after the reload")
    eventually(lambda: account_column(stack, account, "websiteurl") == "after the reload", timeout=60,
               what="the newly mapped column reaching Dataverse")

    # An invalid edit is reported, and the running version (with the new column) keeps syncing.
    broken = dict(definition, conflict="whoever_shouts_loudest")
    path.write_text(json.dumps(broken))
    problem = eventually(lambda: maps_loaded(stack)["maps_problem"], timeout=90, what="the invalid maps reported")
    assert "previous version keeps running" in problem and "conflict" in problem
    change_customer(stack, account, NameAlias="still synced")
    eventually(lambda: account_column(stack, account, "websiteurl") == "still synced", timeout=60,
               what="the change synced by the running version")
