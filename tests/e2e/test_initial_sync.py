"""Initial sync and reconciliation over the whole local stack: runs started and watched through the
management API (`/api/manage/v1/sync/runs`), data loaded and drift injected straight into the simulators
(their admin paths fire no events), writes counted by the simulators.

Its own stack (Azurite included: links and runs of the live-sync tests must not mix with these), with
Dataverse's service protection at its defaults and pages of 200 rows so that a run has many pages.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.azurite import azurite_table, connection_string
from tests.e2e.conftest import Stack, eventually, running_stack
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import run_emulator, test_topology_document

pytestmark = pytest.mark.e2e
RUNS = "/api/manage/v1/sync/runs"
PAGE_SIZE = 200


@pytest.fixture(scope="module")
def sync_stack(devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    # Its own emulator too: a host killed with kill -9 (below) must not disturb the emulator the live-sync
    # tests share.
    azurite = azurite_table().start()
    try:
        assert azurite.port is not None
        with run_emulator(test_topology_document(), name="servicebus-initial-sync") as emulator, \
                running_stack(connection_string(azurite.port), emulator, devhost, dataverse_flags=(),
                              SYNC_PAGE_SIZE=str(PAGE_SIZE)) as stack:
            yield stack
    finally:
        azurite.stop()


# -- helpers -------------------------------------------------------------------------------------------
def start(stack: Stack, **body: Any) -> str:
    response = stack.admin.post(RUNS, json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def run_of(stack: Stack, run_id: str) -> dict[str, Any]:
    response = stack.admin.get(f"{RUNS}/{run_id}")
    response.raise_for_status()
    return response.json()


def finished(stack: Stack, run_id: str, *, timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = run_of(stack, run_id)
        return run if run["status"] in ("completed", "failed", "cancelled") else None
    run = eventually(done, timeout=timeout, what=f"run {run_id} finishing")
    assert run["status"] == "completed", run
    return run


def drift(stack: Stack, run_id: str, **params: Any) -> list[dict[str, Any]]:
    response = stack.admin.get(f"{RUNS}/{run_id}/drift", params={"limit": 10000, **params})
    response.raise_for_status()
    return response.json()["items"]


def by_map(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["map"]: m for m in run["maps"]}


def customer(number: str, name: str | None = None, **values: Any) -> dict[str, Any]:
    return {"dataAreaId": "usmf", "CustomerAccount": number, "OrganizationName": name or f"Initial {number}",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
            "PaymentTerms": "Net30", "CreditLimit": "1000.0000000001", **values}


def load_fno(stack: Stack, rows: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{stack.fno.admin_url}load", json={"entity": "CustomersV3", "rows": rows}, timeout=120)
    assert response.status_code == 200, response.text


def stats_reset(stack: Stack) -> None:
    httpx.post(f"{stack.dataverse.url}/_sim/stats/reset", timeout=30).raise_for_status()


def account_writes(stack: Stack) -> dict[str, int]:
    stats = httpx.get(f"{stack.dataverse.url}/_sim/stats", timeout=30).json()
    return stats.get("record_writes", {}).get("accounts", {})


def accounts_like(stack: Stack, prefix: str) -> dict[str, dict[str, Any]]:
    rows = stack.rows("accounts", **{"$filter": f"startswith(accountnumber,'{prefix}')",
                                     "$select": "accountnumber,name,creditlimit,accountid"})
    return {r["accountnumber"]: r for r in rows}


# -- the tests -------------------------------------------------------------------------------------------
def test_initial_sync_of_every_map_from_fno_in_dependency_order_leaves_both_sides_equal(sync_stack: Stack) -> None:
    stack = sync_stack
    run_id = start(stack, kind="initial", maps=[], source="fno")
    run = finished(stack, run_id)

    # Dependencies first; the contacts/customers cycle broken by patching the deferred lookup after.
    assert run["plan"].index("rows legal-entities") < run["plan"].index("rows customers")
    assert run["plan"].index("rows customer-groups") < run["plan"].index("rows customers")
    assert run["deferred"] == {"customers": ["primarycontactid"]}
    assert run["plan"][-1] == "patch customers"
    maps = by_map(run)
    assert all(m["status"] == "done" for m in maps.values()), maps
    assert run["totals"]["failed"] == 0, drift(stack, run_id, kind="failed")[:5]
    assert maps["customers"]["read"] > 0 and maps["customers"]["written"] > 0  # the seed differs on purpose

    # Checked again by a compare run from the same side: nothing missing in Dataverse, nothing different.
    check = finished(stack, start(stack, kind="compare", maps=[], source="fno"))
    assert check["totals"]["missing_on_target"] == 0 and check["totals"]["differs"] == 0, \
        [d for d in drift(stack, check["id"]) if d["kind"] != "missing_on_source"][:10]
    # And by hand, for one customer: its F&O name and credit limit are the account's.
    fo = stack.customer("US-001")
    account = stack.account("US-001")
    assert fo is not None and account is not None
    assert account["name"] == fo["OrganizationName"]


def test_a_target_holding_half_the_rows_some_different_is_reconciled_as_reported(sync_stack: Stack) -> None:
    stack = sync_stack
    # Both sides live before the project: 50 customers reach Dataverse through live sync...
    for n in range(50):
        response = stack.fo.post("CustomersV3", json=customer(f"HF-{n:03d}"))
        assert response.status_code == 201, response.text
    eventually(lambda: len(accounts_like(stack, "HF-")) == 50, timeout=90, what="50 customers live-synced")
    # ...then 50 more appear in F&O without events, and 8 accounts are changed in Dataverse without webhooks.
    load_fno(stack, [customer(f"HF-{n:03d}") for n in range(50, 100)])
    existing = accounts_like(stack, "HF-")
    changed = [f"HF-{n:03d}" for n in range(0, 40, 5)]
    for number in changed:
        response = httpx.post(f"{stack.dataverse.url}/_sim/update", json={
            "entitySet": "accounts", "id": existing[number]["accountid"], "set": {"name": "Edited in Dataverse"}},
            timeout=30)
        assert response.status_code == 200, response.text
    stats_reset(stack)

    run = finished(stack, start(stack, kind="initial", maps=["customers"]))

    differing = {d["key"] for d in drift(stack, run["id"], kind="differs") if "HF-" in d["key"]}
    assert differing == {f"USMF|{n}" for n in changed}
    assert all(d["columns"] == ["name"] for d in drift(stack, run["id"], kind="differs") if "HF-" in d["key"])
    writes = {k: v for k, v in account_writes(stack).items() if k in {a["accountid"] for a in existing.values()}}
    # The 42 equal rows were linked and not written; the 8 different ones written once each (F&O is primary).
    assert sorted(writes) == sorted(existing[n]["accountid"] for n in changed)
    assert set(writes.values()) == {1}
    after = accounts_like(stack, "HF-")
    assert len(after) == 100
    assert all(a["name"] == f"Initial {number}" for number, a in after.items())
    customers = by_map(run)["customers"]
    assert customers["missing_on_target"] >= 50 and customers["differs"] >= 8


def test_an_invalid_row_lands_in_the_error_log_while_the_rest_sync_and_a_retry_run_takes_just_it(
        sync_stack: Stack) -> None:
    stack = sync_stack
    rows = [customer(f"BR-{n:03d}") for n in range(30)]
    rows[7]["CreditLimit"] = "-5"  # F&O takes a negative credit limit; Dataverse's column starts at 0
    load_fno(stack, rows)

    run = finished(stack, start(stack, kind="initial", maps=["customers"]))

    assert by_map(run)["customers"]["failed"] == 1
    [failed] = drift(stack, run["id"], kind="failed")
    assert failed["key"] == "USMF|BR-007" and "creditlimit" in (failed["detail"] or "").lower()
    errors = [e for e in stack.errors() if e.get("run_id") == run["id"]]
    assert [e["key"] for e in errors] == ["USMF|BR-007"]
    assert len(accounts_like(stack, "BR-")) == 29

    # Fixed in F&O (without an event), then a run of just the failed rows.
    response = httpx.post(f"{stack.fno.admin_url}bulk-update", json={
        "entity": "CustomersV3", "filter": "CustomerAccount eq 'BR-007'", "company": "usmf",
        "set": {"CreditLimit": "10"}}, timeout=30)
    assert response.status_code == 200, response.text
    retry = finished(stack, start(stack, retry_failed_of=run["id"]))
    assert retry["retry_of"] == run["id"]
    assert by_map(retry)["customers"]["read"] == 1 and by_map(retry)["customers"]["written"] == 1
    assert "BR-007" in accounts_like(stack, "BR-")


def test_compare_finds_injected_drift_and_repair_fixes_it(sync_stack: Stack) -> None:
    stack = sync_stack
    load_fno(stack, [customer(f"DR-{n:03d}") for n in range(20)])
    finished(stack, start(stack, kind="initial", maps=["customers"]))
    accounts = accounts_like(stack, "DR-")
    assert len(accounts) == 20
    # Drift behind the engine's back: a row deleted in Dataverse, a name changed in F&O, a row deleted in F&O.
    httpx.post(f"{stack.dataverse.url}/_sim/delete", json={"entitySet": "accounts",
               "ids": [accounts["DR-003"]["accountid"]]}, timeout=30).raise_for_status()
    httpx.post(f"{stack.fno.admin_url}bulk-update", json={
        "entity": "CustomersV3", "filter": "CustomerAccount eq 'DR-004'", "company": "usmf",
        "set": {"OrganizationName": "Renamed in F&O"}}, timeout=30).raise_for_status()
    httpx.post(f"{stack.fno.admin_url}delete", json={
        "entity": "CustomersV3", "keys": [{"dataAreaId": "usmf", "CustomerAccount": "DR-005"}]},
        timeout=30).raise_for_status()

    compare = finished(stack, start(stack, kind="compare", maps=["customers"]))
    found = {(d["kind"], d["key"]) for d in drift(stack, compare["id"]) if "DR-" in d["key"]}
    assert found == {("missing_on_target", "USMF|DR-003"), ("differs", "USMF|DR-004"),
                     ("missing_on_source", "USMF|DR-005")}
    assert accounts_like(stack, "DR-").keys() == accounts.keys() - {"DR-003"}  # compare writes nothing

    finished(stack, start(stack, kind="repair", maps=["customers"]))
    after = accounts_like(stack, "DR-")
    assert set(after) == set(accounts) - {"DR-005"}
    assert after["DR-004"]["name"] == "Renamed in F&O"
    again = finished(stack, start(stack, kind="compare", maps=["customers"]))
    assert [d for d in drift(stack, again["id"]) if "DR-" in d["key"]] == []


def test_a_run_killed_at_30_percent_completes_after_a_restart_without_writing_a_row_twice(
        sync_stack: Stack) -> None:
    stack = sync_stack
    rows = 3000
    load_fno(stack, [customer(f"KL-{n:04d}") for n in range(rows)])
    stats_reset(stack)
    run_id = start(stack, kind="initial", maps=["customers"])

    def progressed() -> dict[str, Any] | None:
        run = run_of(stack, run_id)
        return run if by_map(run)["customers"]["written"] >= rows * 0.3 else None
    before = eventually(progressed, timeout=180, what="30% of the run written")
    assert before["status"] == "running", "the run finished before the kill: nothing was tested"
    process = stack.host.process
    assert process.proc is not None
    os.killpg(process.proc.pid, signal.SIGKILL)  # kill -9: no shutdown, pages in flight abandoned
    process.proc.wait(10)
    time.sleep(1)
    process.start()

    run = finished(stack, run_id, timeout=300)

    writes = account_writes(stack)
    loaded = {a["accountid"] for a in accounts_like(stack, "KL-").values()}
    assert len(loaded) == rows
    numbers = {a["accountid"]: n for n, a in accounts_like(stack, "").items()}
    assert max(writes.values()) == 1, [(numbers.get(k, k), n) for k, n in writes.items() if n > 1][:20]
    assert sum(n for row_id, n in writes.items() if row_id in loaded) == rows
    assert by_map(run)["customers"]["failed"] == 0


def test_a_cancelled_run_starts_no_new_page(sync_stack: Stack) -> None:
    stack = sync_stack
    rows = 4000
    load_fno(stack, [customer(f"CX-{n:04d}") for n in range(rows)])
    run_id = start(stack, kind="initial", maps=["customers"])
    response = stack.admin.post(f"{RUNS}/{run_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    again = stack.admin.post(f"{RUNS}/{run_id}/cancel")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    time.sleep(3)  # pages already in flight finish
    settled = len(accounts_like(stack, "CX-"))
    time.sleep(3)
    assert len(accounts_like(stack, "CX-")) == settled < rows  # nothing new starts
    assert run_of(stack, run_id)["status"] == "cancelled"
    assert stack.admin.get(f"{RUNS}/not-a-run").status_code == 404
