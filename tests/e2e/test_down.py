"""Nothing lost while the app is down (issue 18): the Functions host is killed (kill -9 of its process group), changes
are made on both sides while it is down (Dataverse: creates, updates and deletes, whose webhooks end as failed System
Jobs; F&O: creates and updates, whose events end in F&O's errors list after its few retries), then the host starts
again. The sweep it runs at start finds every one of them; each arrives on the other side, and no record is written
more often than it was changed (the simulators' write counts)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    Stack,
    accounts_with_prefix,
    customers_with_prefix,
    drain,
    dv_stats,
    eventually,
    fno_stats,
    reset_stats,
    running_stack,
)
from tests.fixtures.azurite import own_tables
from tests.fixtures.devhost import RunningHost

RECORDS = 24  # made (and synced) before the downtime
NEW = 6  # made on each side while down


@pytest.fixture(scope="module", params=["jobs", "changes"])
def stack(request: pytest.FixtureRequest, servicebus_emulator: Any,
          devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    """A stack of this module's own (its host is killed), on an Azurite of each run's own: the activity log, links
    and sweep checkpoints of one run must not meet another's, nor the shared Azurite's later tests, which change the
    same seeded records. Dataverse without low limits, so the figures are the sweep's and not the throttling's. The
    timer also sweeps every minute: what start misses, it finds. Dataverse is swept once by its failed System Jobs,
    once by change tracking (SWEEP_DATAVERSE)."""
    for azurite in own_tables():
        with running_stack(azurite, servicebus_emulator, devhost, dataverse_flags=(), SWEEP_ENABLED="true",
                           SWEEP_DATAVERSE=request.param, SWEEP_INTERVAL_SECONDS="0",
                           SWEEP_OVERLAP_SECONDS="10") as running:
            yield running


def failed_jobs(stack: Stack) -> int:
    rows = stack.rows("asyncoperations", **{"$filter": "statuscode eq 31", "$select": "asyncoperationid"})
    return len(rows)


def fno_errors(stack: Stack) -> list[Any]:
    """F&O's business events errors list: deliveries that gave up after F&O's retries."""
    body = httpx.get(f"{stack.fno.admin_url}errors", timeout=30).json()
    return list(body.get("value", []) if isinstance(body, dict) else body)


def kill_host(stack: Stack) -> None:
    process = stack.host.process.proc
    assert process is not None
    os.killpg(process.pid, signal.SIGKILL)  # no shutdown of any kind: what a crash or a lost worker does
    process.wait(10)


def test_changes_made_while_the_host_is_killed_all_arrive_once(stack: Stack) -> None:
    prefix = f"K{uuid.uuid4().hex[:4].upper()}-"
    accounts = [f"{prefix}{n:03d}" for n in range(RECORDS)]
    for account in accounts:
        response = stack.fo.post("CustomersV3", json={
            "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": f"Before {account}",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30",
            "PrimaryContactPhone": "+1 555 0000"})
        assert response.status_code == 201, response.text
    rows = eventually(lambda: (found := accounts_with_prefix(stack, prefix)) and len(found) == RECORDS and found,
                      timeout=120, what="the customers reaching Dataverse before the downtime")
    drain(stack)
    # the sweep has run (at start) and set its checkpoints; run it once more so they are recent
    assert stack.admin.post("/admin/functions/sweep", json={}).status_code == 202
    time.sleep(1.5)  # ModifiedDateTime and completedon have whole seconds
    reset_stats(stack)
    jobs_before = failed_jobs(stack)

    kill_host(stack)
    renamed, rephoned, deleted = accounts[:8], accounts[8:16], accounts[16:19]
    for account in renamed:  # F&O: updates
        response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')",
                                  params={"cross-company": "true"}, json={"OrganizationName": f"Down {account}"})
        assert response.status_code == 204, response.text
    fno_new = [f"{prefix}F{n}" for n in range(NEW)]
    for account in fno_new:  # F&O: creates
        response = stack.fo.post("CustomersV3", json={
            "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": f"Made in F&O while down {account}",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30",
            "PrimaryContactPhone": "+1 555 0001"})
        assert response.status_code == 201, response.text
    for account in rephoned:  # Dataverse: updates
        response = stack.dv.patch(f"accounts({rows[account]['accountid']})",
                                  json={"telephone1": f"+1 555 9{account[-3:]}"})
        assert response.status_code == 204, response.text
    for account in deleted:  # Dataverse: deletes
        assert stack.dv.delete(f"accounts({rows[account]['accountid']})").status_code == 204
    group = stack.rows("msdyn_customergroups", **{
        "$filter": f"msdyn_groupid eq '20' and _msdyn_company_value eq {stack.company_id('usmf')}"})[0]
    dv_new = [f"{prefix}D{n}" for n in range(NEW)]
    for account in dv_new:  # Dataverse: creates
        response = stack.dv.post("accounts", json={
            "name": f"Made in Dataverse while down {account}", "accountnumber": account, "customertypecode": 3,
            "msdyn_company@odata.bind": f"/cdm_companies({stack.company_id('usmf')})",
            "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({group['msdyn_customergroupid']})",
            "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')"})
        assert response.status_code == 204, response.text
    drain(stack)  # every webhook has failed, every F&O event is in its errors list
    made = {"fno": len(renamed) + len(fno_new), "dataverse": len(rephoned) + len(deleted) + len(dv_new)}
    failed_deliveries = {"dataverse": failed_jobs(stack) - jobs_before,
                         "fno": len(fno_errors(stack))}
    assert failed_deliveries["dataverse"] == made["dataverse"]  # nothing reached the app while it was down

    stack.host.process.start()

    def arrived() -> list[str]:
        """What has not arrived yet (empty: everything has)."""
        dv, fo = accounts_with_prefix(stack, prefix), customers_with_prefix(stack, prefix)
        missing = [f"dv {a} name" for a in renamed if dv.get(a, {}).get("name") != f"Down {a}"]
        missing += [f"dv {a} created" for a in fno_new if a not in dv]
        missing += [f"fno {a} phone" for a in rephoned
                    if fo.get(a, {}).get("PrimaryContactPhone") != f"+1 555 9{a[-3:]}"]
        missing += [f"fno {a} deleted" for a in deleted if a in fo]
        missing += [f"fno {a} created" for a in dv_new if a not in fo]
        return missing

    def everything_and_quiet() -> bool:
        drain(stack)
        if arrived():
            return False
        before = (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"])
        time.sleep(3)
        drain(stack)
        return before == (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"]) and not arrived()

    started = time.monotonic()
    try:
        eventually(everything_and_quiet, timeout=240, what="every change made while the host was down arriving")
    except AssertionError:
        raise AssertionError(f"not arrived: {arrived()}") from None
    converged = time.monotonic() - started

    # Written once: each record changed once on one side is written once there (the test) and once on the other
    # side (the engine), never more, although the sweep found some of them more than once (start and timer).
    dv_ids = {a: r["accountid"] for a, r in accounts_with_prefix(stack, prefix).items()}
    dv_ids.update({a: rows[a]["accountid"] for a in deleted})
    fno_writes = fno_stats(stack)["record_writes"].get("CustomersV3", {})
    dv_writes = dv_stats(stack)["record_writes"].get("accounts", {})
    doubled = []
    for account in [*renamed, *rephoned, *deleted, *fno_new, *dv_new]:
        on_fno = fno_writes.get(f"dataAreaId='usmf',CustomerAccount='{account}'", 0)
        on_dv = dv_writes.get(dv_ids[account], 0)
        if (on_fno, on_dv) != (1, 1):
            doubled.append((account, on_fno, on_dv))
    assert doubled == [], (doubled, [(e["at"][11:23], e["source"], e["operation"], e["outcome"], e["reason"][:120],
                                      e["event_id"][:40]) for e in stack.activity(map="customers",
                                                                                  key=f"USMF|{doubled[0][0]}")][:30])
    untouched = [a for a in accounts[19:] if fno_writes.get(f"dataAreaId='usmf',CustomerAccount='{a}'", 0)
                 or dv_writes.get(dv_ids[a], 0)]
    assert untouched == []
    assert [e for e in stack.errors(status="all") if e["key"].startswith(f"USMF|{prefix}")] == []
    swept = [e for e in stack.activity(map="customers") if e["reason"].startswith("sweep:")]
    assert len({e["event_id"] for e in swept}) >= made["fno"] + made["dataverse"]
    print(f"\nhost killed: {made} changes made while down, failed deliveries {failed_deliveries}; all "
          f"{sum(made.values())} arrived within {converged:.0f} s of the restart; sweep entries {len(swept)}; "
          f"records written more than once: {len(doubled)}")
