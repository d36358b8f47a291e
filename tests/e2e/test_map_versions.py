"""Maps changed through the management API under a running host: a PUT gaining a mapped column takes effect without
a restart (the instance that stored it runs it at once), an invalid PUT is refused naming the field and changes
nothing, the revisions are listed, and a restore brings an earlier one back.

Its own stack over an Azurite of its own: the revisions it stores would otherwise beat the map files of every
later host on the shared Azurite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.connectors import jsonwire
from tests.e2e.conftest import Stack, account_column, change_customer, eventually, new_customer, running_stack
from tests.fixtures.devhost import RunningHost

MAP = "/api/manage/v1/maps/customers"


@pytest.fixture(scope="module")
def versions_stack(own_azurite: str, servicebus_emulator: Any,
                   devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    with running_stack(own_azurite, servicebus_emulator, devhost) as stack:
        yield stack


def _running(stack: Stack) -> dict[str, Any]:
    response = stack.admin.get(MAP)
    assert response.status_code == 200, response.text
    return dict(jsonwire.loads(response.content))


def _with_name_alias_in(definition: dict[str, Any], column: str, version: str) -> bytes:
    """The customers map with F&O's NameAlias mapped to a Dataverse column of the account."""
    fields = [f for f in definition["fields"] if f.get("fno") != "NameAlias"]
    fields.append({"fno": "NameAlias", "dataverse": column, "direction": "both", "type": "string"})
    return jsonwire.dumps({**definition, "version": version, "fields": fields})


def _put(stack: Stack, body: bytes, **headers: str) -> Any:
    return stack.admin.put(MAP, content=body, headers={"content-type": "application/json", **headers})


def test_a_map_changed_through_the_api_runs_without_a_restart_and_an_earlier_revision_can_be_restored(
        versions_stack: Stack) -> None:
    stack = versions_stack
    account = f"V{uuid.uuid4().hex[:6].upper()}"
    new_customer(stack, account, NameAlias="before")
    assert account_column(stack, account, "websiteurl") is None  # NameAlias is not mapped by the file
    shipped = _running(stack)
    assert shipped["revision"] is None and shipped["origin"].endswith("customers.json")

    first = _put(stack, _with_name_alias_in(shipped["definition"], "websiteurl", "1.1.0"),
                 **{"if-match": '"0"', "x-dualwrite-user": "ana", "x-dualwrite-reason": "website from the alias"})
    assert first.status_code == 201, first.text
    assert (first.json()["revision"], first.json()["version"]) == (1, "1.1.0")
    assert (_running(stack)["revision"], _running(stack)["origin"]) == (1, "stored revision 1")
    change_customer(stack, account, NameAlias="after the put")
    eventually(lambda: account_column(stack, account, "websiteurl") == "after the put", timeout=60,
               what="the column the PUT mapped reaching Dataverse")

    # Invalid: refused naming the field, nothing stored, the running map unchanged.
    refused = _put(stack, jsonwire.dumps({**_running(stack)["definition"], "conflict": "whoever_shouts_loudest"}))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [(p["map"], p["field"]) for p in refused.json()["problems"]] == [("customers", "conflict")]
    after_refusal = _running(stack)
    assert after_refusal["revision"] == 1 and after_refusal["definition"]["conflict"] == "latest_wins"

    second = _put(stack, _with_name_alias_in(shipped["definition"], "fax", "1.2.0"), **{"if-match": '"1"'})
    assert second.status_code == 201 and second.json()["revision"] == 2, second.text
    versions = stack.admin.get(f"{MAP}/versions").json()
    assert [(v["revision"], v["version"], v["by"]) for v in versions["versions"]] == [
        (2, "1.2.0", "api"), (1, "1.1.0", "ana")]
    assert versions["versions"][1]["reason"] == "website from the alias" and versions["running_revision"] == 2

    restored = stack.admin.post(f"{MAP}/versions/1/restore")
    assert restored.status_code == 201 and restored.json()["revision"] == 3, restored.text
    running = _running(stack)
    assert (running["revision"], running["version"]) == (3, "1.1.0")
    assert running["definition"] == jsonwire.loads(stack.admin.get(f"{MAP}/versions/1").content)["body"]
    change_customer(stack, account, NameAlias="after the restore")
    eventually(lambda: account_column(stack, account, "websiteurl") == "after the restore", timeout=60,
               what="revision 1's column syncing again after the restore")
