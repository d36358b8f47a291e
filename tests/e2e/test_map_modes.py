"""Map modes through the whole local stack: a paused map parks its changes coalesced per record, and resume
catches up with exactly one write per record and direction; stop drops changes on purpose, with the reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.connectors.batch import BatchOp
from tests.e2e.conftest import (
    Stack,
    accounts_with_prefix,
    customers_with_prefix,
    drain,
    dv_stats,
    eventually,
    fno_stats,
    reset_stats,
    send_batch,
)

RECORDS = 50
CHANGES_PER_SIDE = 250  # 500 changes over 50 records, both sides
PER_BATCH = 50


def _mode(stack: Stack, name: str = "customers") -> dict[str, Any]:
    response = stack.admin.get(f"/api/manage/v1/modes/{name}")
    response.raise_for_status()
    return response.json()


def _act(stack: Stack, action: str, name: str = "customers", reason: str = "") -> httpx.Response:
    return stack.admin.post(f"/api/manage/v1/modes/{name}/{action}", json={"reason": reason} if reason else None)


def _customer(account: str) -> str:
    return f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')?cross-company=true"


@pytest.fixture
def running_again(stack: Stack) -> Iterator[None]:
    """Whatever a test leaves behind, the map runs again afterwards (the package's later tests need it)."""
    yield
    mode = _mode(stack)["mode"]
    if mode in ("paused", "error"):
        _act(stack, "resume")
    elif mode == "stopped":
        _act(stack, "start")
    eventually(lambda: _mode(stack)["mode"] == "running", timeout=120, what="the customers map running again")


def _new_customers(stack: Stack, prefix: str, count: int) -> dict[str, dict[str, Any]]:
    accounts = [f"{prefix}{n:03d}" for n in range(count)]
    send_batch(stack.fo, [BatchOp("POST", "CustomersV3", {
        "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": f"Modes {account}",
        "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
        "PaymentTerms": "Net30", "PrimaryContactPhone": "+1 555 0000"}) for account in accounts],
        each_write_atomic=True)

    def synced() -> dict[str, dict[str, Any]] | None:
        found = accounts_with_prefix(stack, prefix)
        return found if len(found) == count else None

    return eventually(synced, timeout=180, what=f"the {count} new customers reaching Dataverse")


def test_pause_parks_and_resume_catches_up_with_one_write_per_record_and_direction(
        stack: Stack, running_again: None) -> None:
    prefix = f"M{uuid.uuid4().hex[:5].upper()}-"
    rows = _new_customers(stack, prefix, RECORDS)
    accounts = sorted(rows)
    drain(stack)

    paused = _act(stack, "pause", reason="maintenance window")
    assert paused.status_code == 200, paused.text
    assert paused.json()["mode"] == "paused" and paused.json()["reason"] == "maintenance window"
    again = _act(stack, "pause")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    assert "map 'customers' is paused" in again.json()["detail"]
    time.sleep(3)  # every instance's cached mode has expired (2 s)

    fno_ops, dv_ops = [], []
    for n in range(CHANGES_PER_SIDE):
        account = accounts[n % RECORDS]
        fno_ops.append(BatchOp("PATCH", _customer(account), {"OrganizationName": f"Paused {n} {account}"}))
        account = accounts[(n * 7) % RECORDS]
        dv_ops.append(BatchOp("PATCH", f"accounts({rows[account]['accountid']})", {"telephone1": f"+1 555 {n:04d}"}))
    for start in range(0, CHANGES_PER_SIDE, PER_BATCH):
        send_batch(stack.fo, fno_ops[start:start + PER_BATCH], each_write_atomic=True)
        send_batch(stack.dv, dv_ops[start:start + PER_BATCH], each_write_atomic=False)

    def all_parked() -> dict[str, Any] | None:
        drain(stack)
        view = _mode(stack)
        return view if view["parked"]["changes"] >= 2 * CHANGES_PER_SIDE else None

    view = eventually(all_parked, timeout=180, what="all 500 changes parked")
    # coalesced per record and side: 50 records changed on both sides
    assert view["parked"] == {"records": 2 * RECORDS, "changes": 2 * CHANGES_PER_SIDE}, view["parked"]
    assert stack.customer(accounts[1])["PrimaryContactPhone"] == "+1 555 0000"  # nothing went across
    parked = stack.activity(map="customers", key=f"USMF|{accounts[1]}", outcome="parked")
    assert parked and all(e["reason"].startswith("parked: the map is paused") for e in parked)

    reset_stats(stack)
    resumed = _act(stack, "resume", reason="window over")
    assert resumed.status_code == 202, resumed.text
    # a record changed again while the map catches up ends with its latest value
    latest = f"Latest {accounts[0]}"
    send_batch(stack.fo, [BatchOp("PATCH", _customer(accounts[0]), {"OrganizationName": latest})],
               each_write_atomic=True)

    def fno_rows() -> dict[str, dict[str, Any]]:
        return customers_with_prefix(stack, prefix)

    def differences() -> list[str]:
        dv, fo = accounts_with_prefix(stack, prefix), fno_rows()
        return [a for a in accounts if (fo[a]["OrganizationName"], fo[a]["PrimaryContactPhone"])
                != (dv[a]["name"], dv[a]["telephone1"])]

    def caught_up() -> bool:
        drain(stack)
        return _mode(stack)["mode"] == "running" and not differences() and _mode(stack)["parked"]["records"] == 0

    try:
        eventually(caught_up, timeout=300, what="the catch-up ending with both sides equal")
    except AssertionError:
        raise AssertionError(f"mode {_mode(stack)}; records differing: {differences()[:5]}") from None
    time.sleep(3)
    drain(stack)

    final = fno_rows()
    assert final[accounts[0]]["OrganizationName"] == latest
    for n, account in enumerate(accounts):
        last_rename = max(k for k in range(CHANGES_PER_SIDE) if k % RECORDS == n)
        if account != accounts[0]:
            assert final[account]["OrganizationName"] == f"Paused {last_rename} {account}"
        last_phone = max(k for k in range(CHANGES_PER_SIDE) if accounts[(k * 7) % RECORDS] == account)
        assert final[account]["PrimaryContactPhone"] == f"+1 555 {last_phone:04d}"

    # exactly one engine write per record and direction (the record changed during catch-up: one more)
    fno_writes = fno_stats(stack)["record_writes"].get("CustomersV3", {})
    dv_writes = dv_stats(stack)["record_writes"].get("accounts", {})
    on_fno = {a: fno_writes.get(f"dataAreaId='usmf',CustomerAccount='{a}'", 0) for a in accounts}
    on_dv = {a: dv_writes.get(rows[a]["accountid"], 0) for a in accounts}
    assert on_fno[accounts[0]] == 2  # the test's own PATCH during catch-up, and the engine's phone
    assert {a: c for a, c in on_fno.items() if a != accounts[0] and c != 1} == {}
    assert on_dv[accounts[0]] in (1, 2)  # the parked rename and the later one may be applied as one
    assert {a: c for a, c in on_dv.items() if a != accounts[0] and c != 1} == {}

    view = _mode(stack)
    assert view["catch_up"]["parked_at_resume"] == 2 * RECORDS and view["catch_up"]["sent"] >= 2 * RECORDS
    assert [t["to"] for t in view["transitions"][:3]] == ["running", "catching_up", "paused"]
    assert view["transitions"][1]["reason"] == "window over" and view["transitions"][0]["by"] == "catch-up"
    history = stack.activity(map="customers", key=f"USMF|{accounts[1]}")
    outcomes = [e["outcome"] for e in reversed(history)]  # oldest first
    assert "parked" in outcomes and "applied" in outcomes[outcomes.index("parked"):], outcomes
    assert [e for e in stack.errors(map="customers", status="all") if e["key"].startswith(f"USMF|{prefix}")] == []


def test_a_stopped_map_drops_changes_with_the_reason_and_start_runs_it_again(stack: Stack, running_again: None) -> None:
    prefix = f"S{uuid.uuid4().hex[:5].upper()}-"
    rows = _new_customers(stack, prefix, 1)
    [account] = rows
    stopped = _act(stack, "stop", reason="retired map")
    assert stopped.status_code == 200 and stopped.json()["mode"] == "stopped"
    time.sleep(3)
    send_batch(stack.fo, [BatchOp("PATCH", _customer(account), {"OrganizationName": "While stopped"})],
               each_write_atomic=True)
    dropped = eventually(lambda: [e for e in stack.activity(map="customers", key=f"USMF|{account}")
                                  if e["reason"].startswith("dropped")], what="the change dropped")
    assert dropped[0]["outcome"] == "skipped" and dropped[0]["reason"] == "dropped: the map is stopped: retired map"
    assert stack.account(account)["name"] == f"Modes {account}"
    assert _act(stack, "resume").status_code == 409  # a stopped map is started, not resumed
    assert _act(stack, "start").json()["mode"] == "running"
    assert _act(stack, "nap").status_code == 400
    assert stack.admin.get("/api/manage/v1/modes/nowhere").status_code == 404
