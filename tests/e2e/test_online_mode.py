"""Online mode: the customers map written to F&O inside the user's Dataverse save.

Its own stack over a copy of the shipped maps with `"online": true` on customers: deployment registers
the account steps as synchronous, a Dataverse save reaches F&O before the save answers, and a save that
F&O refuses fails with F&O's message, leaving nothing written on either side. F&O -> Dataverse stays
asynchronous, and a paused online map parks like any other."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, dv_stats, eventually, fno_stats, reset_stats, running_stack
from tests.fixtures.devhost import RunningHost

MAPS = Path(__file__).parents[2] / "maps"
ANNOTATIONS = {"Prefer": 'odata.include-annotations="*"'}


@pytest.fixture(scope="module")
def online_stack(azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("maps")
    for path in MAPS.glob("*.json"):
        shutil.copy(path, folder / path.name)
    customers = json.loads((folder / "customers.json").read_text())
    (folder / "customers.json").write_text(json.dumps({**customers, "online": True}, indent=2))
    # Service protection loose enough that the test user's own saves are not throttled (a 429 answers a
    # save before any step runs; throttling has its own tests).
    with running_stack(azurite, servicebus_emulator, devhost, dataverse_flags=("--limit-requests", "600"),
                       MAPS_PATH=str(folder)) as stack:
        yield stack


def _new_account(stack: Stack, number: str, name: str) -> str:
    group = stack.rows("msdyn_customergroups", **{
        "$filter": f"msdyn_groupid eq '20' and _msdyn_company_value eq {stack.company_id('usmf')}"})[0]
    response = stack.dv.post("accounts", headers={"Prefer": "return=representation"}, json={
        "name": name, "accountnumber": number, "customertypecode": 3,
        "msdyn_company@odata.bind": f"/cdm_companies({stack.company_id('usmf')})",
        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({group['msdyn_customergroupid']})",
        "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='EUR')"})
    assert response.status_code == 201, response.text
    return str(response.json()["accountid"])


def _online_entries(stack: Stack, number: str) -> list[dict[str, Any]]:
    return [e for e in stack.activity(map="customers", key=f"USMF|{number}") if e["reason"].startswith("online:")]


def test_deployment_registers_the_account_steps_as_synchronous(online_stack: Stack) -> None:
    steps = online_stack.rows("sdkmessageprocessingsteps", **{
        "$select": "name,mode,stage", "$filter": "startswith(name,'dw-oss:')"})
    modes = {s["name"]: (s["mode"], s["stage"]) for s in steps}
    assert modes["dw-oss: Update of account"] == (0, 40)
    assert modes["dw-oss: Create of account"] == (0, 40)
    assert modes["dw-oss: Update of contact"] == (1, 40)  # contacts are not online: still asynchronous


def test_a_dataverse_save_reaches_fno_before_it_answers(online_stack: Stack) -> None:
    stack = online_stack
    number = f"US-ON{uuid.uuid4().hex[:5].upper()}"
    account_id = _new_account(stack, number, "Online Ltd")
    customer = stack.customer(number)  # no waiting: the save answered after the F&O write
    assert customer is not None and customer["OrganizationName"] == "Online Ltd"

    response = stack.dv.patch(f"accounts({account_id})", json={"name": "Online Ltd renamed"})
    assert response.status_code == 204, response.text
    assert stack.customer(number)["OrganizationName"] == "Online Ltd renamed"
    applied = [e for e in _online_entries(stack, number) if e["outcome"] == "applied"]
    assert [e["operation"] for e in applied] == ["update", "create"]  # newest first


def test_a_save_fno_refuses_fails_with_fnos_message_and_writes_nothing(online_stack: Stack) -> None:
    stack = online_stack
    number = f"US-ON{uuid.uuid4().hex[:5].upper()}"
    account_id = _new_account(stack, number, "Refused Ltd")
    reset_stats(stack)

    too_long = "R" * 150  # F&O's OrganizationName holds 100 characters, Dataverse's name 160
    response = stack.dv.patch(f"accounts({account_id})", headers=ANNOTATIONS, json={"name": too_long})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "0x80040265" and "Endpoint unavailable" in error["message"]
    log = error["@Microsoft.PowerApps.CDS.TraceText"]  # the error dialog's downloadable log
    assert "F&O refused the change" in log
    assert "OrganizationName" in log and "allows at most 100" in log

    time.sleep(3)  # anything queued or late would show by now
    assert stack.account(number)["name"] == "Refused Ltd"  # the save was rolled back
    assert stack.customer(number)["OrganizationName"] == "Refused Ltd"
    assert fno_stats(stack)["record_writes"].get("CustomersV3", {}) == {}
    assert dv_stats(stack)["record_writes"].get("accounts", {}) == {}
    # A refused save is listed under the row id, as any Dataverse change that failed before its key was known.
    failed = [e for e in stack.activity(map="customers", key=f"dataverse:{account_id}") if e["outcome"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"].startswith("online: F&O refused the change: The value")
    assert "allows at most 100" in failed[0]["reason"]
    assert [e for e in stack.errors(map="customers") if number in e.get("key", "")] == []  # nothing to resubmit


def test_fno_changes_still_reach_dataverse_asynchronously(online_stack: Stack) -> None:
    stack = online_stack
    number = f"US-ON{uuid.uuid4().hex[:5].upper()}"
    _new_account(stack, number, "Both Ways Ltd")
    response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{number}')",
                              params={"cross-company": "true"}, json={"PrimaryContactPhone": "+1 555 0101"})
    assert response.status_code == 204, response.text
    eventually(lambda: stack.account(number)["telephone1"] == "+1 555 0101", timeout=60,
               what="the F&O phone change reaching Dataverse")


def test_a_paused_online_map_parks_the_save_and_catches_up_on_resume(online_stack: Stack) -> None:
    stack = online_stack
    number = f"US-ON{uuid.uuid4().hex[:5].upper()}"
    account_id = _new_account(stack, number, "Paused Ltd")
    assert stack.admin.post("/api/manage/v1/modes/customers/pause", json={"reason": "online test"}).is_success
    try:
        time.sleep(2.5)  # the mode is cached for 2 s per instance
        response = stack.dv.patch(f"accounts({account_id})", json={"name": "Paused Ltd renamed"})
        assert response.status_code == 204, response.text  # the save does not wait for F&O while paused
        eventually(lambda: [e for e in stack.activity(map="customers", key=f"USMF|{number}", outcome="parked")],
                   timeout=60, what="the change parked")
        assert stack.customer(number)["OrganizationName"] == "Paused Ltd"
    finally:
        assert stack.admin.post("/api/manage/v1/modes/customers/resume").is_success
    eventually(lambda: stack.customer(number)["OrganizationName"] == "Paused Ltd renamed", timeout=90,
               what="the parked change applied on resume")
