"""A target that answers 503 for two minutes loses nothing and leaves the error log empty, in both
directions: Dataverse down while F&O changes flow to it, then F&O down while Dataverse changes flow to
it (the source has to be up to make changes, so each direction has its own outage, one after the other).

Per direction: 30 customers of their own, 15 made and synced before the outage; during the outage the
15 are updated, 15 more created and 10 of the 30 changed once more. While the target is down the
activity log shows `retrying` for them, then (after APPLY_AUTO_PAUSE_SECONDS, 45 s here) the map pauses
itself and parks them, and the error log gets nothing; a probe finds the target back, the map catches
up by itself, and every change
arrives with its last values, the error log is still empty, the target's write stats show no record
written more often than it changed (held records' later changes wait behind them and are coalesced),
and the engine writes nothing back to the source (no echo).

Both directions run the full two minutes: the acceptance names no side, and each direction costs the
outage plus the engine's next retry after it, about 135 s (under 5 minutes for the file, stack start
included). The stack's host caps the backoff at 30 s (APPLY_BACKOFF_CAP_SECONDS in conftest.py; the
default cap is 300 s), so a target back from its outage is retried within 30 s, not up to 5 minutes."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack, accounts_with_prefix, customers_with_prefix, eventually

OUTAGE = 120  # seconds the target answers 503
ARRIVAL = 300.0  # after the outage: the backoff may already have reached its cap when the target comes back
BEFORE, DURING = 15, 15  # records made before the outage (updated during it) / created during it
AGAIN = 5  # of each group, records changed a second time during the outage

pytestmark = pytest.mark.timeout(OUTAGE + ARRIVAL + 240)


class Sim:
    """A simulator's test routes: outage switch and write stats."""

    def __init__(self, name: str, routes: str) -> None:
        self.name = name
        self.routes = routes  # ends with '/'

    def start_outage(self, seconds: int) -> None:
        response = httpx.post(f"{self.routes}outage", json={"seconds": seconds}, timeout=30)
        assert response.status_code < 300 and response.json()["active"], response.text

    def outage_active(self) -> bool:
        return bool(httpx.get(f"{self.routes}outage", timeout=30).json()["active"])

    def end_outage(self) -> None:
        httpx.delete(f"{self.routes}outage", timeout=30)

    def stats(self, records: bool = True) -> dict[str, Any]:
        response = httpx.get(f"{self.routes}stats", params={} if records else {"records": "false"}, timeout=30)
        response.raise_for_status()
        return response.json()

    def record_writes(self, entity_set: str) -> dict[str, int]:
        return dict(self.stats()["record_writes"].get(entity_set, {}))


def _dataverse(stack: Stack) -> Sim:
    return Sim("Dataverse", stack.dataverse.url.rstrip("/") + "/_sim/")


def _fno(stack: Stack) -> Sim:
    return Sim("F&O", stack.fno.admin_url)


def _fno_address(account: str) -> str:
    return f"dataAreaId='usmf',CustomerAccount='{account}'"


def _drain(stack: Stack) -> None:
    stack.dataverse.drain()
    httpx.post(f"{stack.fno.admin_url}drain", timeout=120).raise_for_status()


def _error_ids(stack: Stack) -> set[str]:
    return {e["id"] for e in stack.errors(status="all")}


def _new_errors(stack: Stack, before: set[str]) -> list[dict[str, Any]]:
    return [e for e in stack.errors(status="all") if e["id"] not in before]


def _wait_quiet(stack: Stack, *sims: Sim, quiet: float = 3.0, timeout: float = 120.0) -> None:
    """Until both simulators have delivered their events and the engine has stopped writing to `sims`."""
    def still() -> bool:
        _drain(stack)
        before = [sim.stats(records=False)["writes"]["total"] for sim in sims]
        time.sleep(quiet)
        _drain(stack)
        return before == [sim.stats(records=False)["writes"]["total"] for sim in sims]

    eventually(still, timeout=timeout, what="the engine to stop writing")


@contextmanager
def _outage(stack: Stack, target: Sim, mine: Callable[[str], bool]) -> Iterator[set[str]]:
    """The target down for OUTAGE seconds around the block (which makes the changes). Until the outage
    ends: the engine meets the 503s, `retrying` entries appear for the test's records, and no error
    entry appears at all. Returns once the target answers again. Yields the ids already in the error
    log (other tests leave some there on purpose)."""
    errors_before = _error_ids(stack)
    unavailable_before = target.stats(records=False)["requests"]["unavailable_503"]
    since = datetime.now(UTC).isoformat()
    target.start_outage(OUTAGE)
    started = time.monotonic()
    try:
        yield errors_before
        retrying: list[dict[str, Any]] = []
        while time.monotonic() - started < OUTAGE - 3:
            assert target.outage_active()
            if not retrying:
                retrying = [e for e in stack.activity(map="customers", outcome="retrying", since=since)
                            if mine(e["key"])]
            assert _new_errors(stack, errors_before) == [], f"error log entries while {target.name} was down"
            time.sleep(3)
        assert retrying, f"no `retrying` entry for the test's records while {target.name} was down"
        assert target.stats(records=False)["requests"]["unavailable_503"] > unavailable_before, \
            f"the engine never met {target.name}'s outage"
        eventually(lambda: not target.outage_active(), timeout=30, what=f"the end of {target.name}'s outage")
        # Past APPLY_AUTO_PAUSE_SECONDS (45 s here) of failures the map paused itself and parked its changes;
        # a probe finds the target back and the map catches up by itself.
        moves = [t for t in stack.admin.get("/api/manage/v1/modes/customers").json()["transitions"]
                 if t["at"] >= since]
        assert any(t["to"] == "error" and t["by"] == "auto-pause" and target.name in t["reason"]
                   for t in moves), moves
        eventually(lambda: stack.admin.get("/api/manage/v1/modes/customers").json()["mode"] == "running",
                   timeout=150, what="the customers map resuming by itself")
        moves = stack.admin.get("/api/manage/v1/modes/customers").json()["transitions"]
        assert [(t["to"], t["by"]) for t in moves[:3]] == [
            ("running", "catch-up"), ("catching_up", "auto-resume"), ("error", "auto-pause")], moves[:3]
    finally:
        target.end_outage()  # a failed check must not leave the package's stack down


def _fno_create(stack: Stack, account: str, name: str, phone: str) -> None:
    response = stack.fo.post("CustomersV3", json={
        "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": name, "PartyType": "Organization",
        "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30", "PrimaryContactPhone": phone})
    assert response.status_code == 201, response.text


def _fno_update(stack: Stack, account: str, values: dict[str, str]) -> None:
    response = stack.fo.patch(f"CustomersV3({_fno_address(account)})", params={"cross-company": "true"},
                              json=values)
    assert response.status_code == 204, response.text


def _dv_write(stack: Stack, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """A Dataverse write as the test user, waiting out its own 429s."""
    for _ in range(60):
        response = stack.dv.request(method, path, json=body)
        if response.status_code != 429:
            assert response.status_code == 204, response.text
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise AssertionError(f"{method} {path}: throttled for too long")


def _dv_create(stack: Stack, account: str, name: str, phone: str, group_id: str) -> str:
    response = _dv_write(stack, "POST", "accounts", {
        "name": name, "accountnumber": account, "telephone1": phone, "customertypecode": 3,
        "msdyn_company@odata.bind": f"/cdm_companies({stack.company_id('usmf')})",
        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({group_id})",
        "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')"})
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")").lower()


def _prefix(letter: str) -> str:
    return f"O{letter}{uuid.uuid4().hex[:4].upper()}-"


def _check_writes(target_writes: dict[str, int], changes: Counter[str], address: Callable[[str], str],
                  target: str) -> None:
    """Each record written on the target at least once and never more often than it changed."""
    wrong = {account: (target_writes.get(address(account), 0), count) for account, count in changes.items()
             if not 1 <= target_writes.get(address(account), 0) <= count}
    assert wrong == {}, f"{target} writes per record (written, changes) out of bounds: {wrong}"


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: count - before.get(key, 0) for key, count in after.items() if count != before.get(key, 0)}


def test_dataverse_down_for_two_minutes_loses_no_fno_change(stack: Stack) -> None:
    dataverse, fno = _dataverse(stack), _fno(stack)
    prefix = _prefix("D")
    accounts = [f"{prefix}{n:02d}" for n in range(BEFORE + DURING)]
    existing, created = accounts[:BEFORE], accounts[BEFORE:]
    for account in existing:
        _fno_create(stack, account, f"Before {account}", "+1 555 0000")
    eventually(lambda: len(accounts_with_prefix(stack, prefix)) == BEFORE, timeout=120,
               what=f"the {BEFORE} customers made before the outage reaching Dataverse")
    _wait_quiet(stack, dataverse, fno)
    dv_before, fno_before = dataverse.record_writes("accounts"), fno.record_writes("CustomersV3")

    expected: dict[str, tuple[str, str]] = {}
    changes: Counter[str] = Counter()
    with _outage(stack, dataverse, lambda key: key.startswith(f"USMF|{prefix}")) as errors_before:
        for n, account in enumerate(existing):
            expected[account] = (f"During {account}", f"+1 555 1{n:03d}")
            _fno_update(stack, account, {"OrganizationName": expected[account][0],
                                         "PrimaryContactPhone": expected[account][1]})
            changes[account] += 1
        for n, account in enumerate(created):
            expected[account] = (f"New {account}", f"+1 555 2{n:03d}")
            _fno_create(stack, account, *expected[account])
            changes[account] += 1
        for account in existing[:AGAIN] + created[:AGAIN]:
            expected[account] = (f"Again {account}", expected[account][1])
            _fno_update(stack, account, {"OrganizationName": expected[account][0]})
            changes[account] += 1

    def missing() -> dict[str, Any]:
        rows = accounts_with_prefix(stack, prefix)
        seen = {account: (row["name"], row["telephone1"]) for account, row in rows.items()}
        return {account: seen.get(account) for account, values in expected.items() if seen.get(account) != values}

    try:
        eventually(lambda: not missing(), timeout=ARRIVAL, what="every F&O change reaching Dataverse")
    except AssertionError:
        raise AssertionError(f"not (or not right) in Dataverse: {missing()}") from None
    _wait_quiet(stack, dataverse, fno)
    assert _new_errors(stack, errors_before) == []
    rows = accounts_with_prefix(stack, prefix)
    _check_writes(_diff(dataverse.record_writes("accounts"), dv_before), changes,
                  lambda account: rows[account]["accountid"], "Dataverse")
    # nothing written back to F&O: its only writes are the test's own
    assert _diff(fno.record_writes("CustomersV3"), fno_before) == {
        _fno_address(account): count for account, count in changes.items()}


def test_fno_down_for_two_minutes_loses_no_dataverse_change(stack: Stack) -> None:
    dataverse, fno = _dataverse(stack), _fno(stack)
    prefix = _prefix("F")
    accounts = [f"{prefix}{n:02d}" for n in range(BEFORE + DURING)]
    existing, created = accounts[:BEFORE], accounts[BEFORE:]
    group_id = stack.rows("msdyn_customergroups", **{"$filter": (
        f"msdyn_groupid eq '10' and _msdyn_company_value eq {stack.company_id('usmf')}")})[0]["msdyn_customergroupid"]
    ids = {account: _dv_create(stack, account, f"Before {account}", "+1 555 0000", group_id) for account in existing}
    eventually(lambda: len(customers_with_prefix(stack, prefix)) == BEFORE, timeout=120,
               what=f"the {BEFORE} accounts made before the outage reaching F&O")
    _wait_quiet(stack, dataverse, fno)
    dv_before, fno_before = dataverse.record_writes("accounts"), fno.record_writes("CustomersV3")

    expected: dict[str, tuple[str, str]] = {}
    changes: Counter[str] = Counter()

    def mine(key: str) -> bool:  # F&O-keyed, or a Dataverse row id (a change's key before it is linked)
        return key.startswith(f"USMF|{prefix}") or key.removeprefix("dataverse:").lower() in ids.values()

    with _outage(stack, fno, mine) as errors_before:
        for n, account in enumerate(existing):
            expected[account] = (f"During {account}", f"+1 555 1{n:03d}")
            _dv_write(stack, "PATCH", f"accounts({ids[account]})",
                      {"name": expected[account][0], "telephone1": expected[account][1]})
            changes[account] += 1
        for n, account in enumerate(created):
            expected[account] = (f"New {account}", f"+1 555 2{n:03d}")
            ids[account] = _dv_create(stack, account, *expected[account], group_id)
            changes[account] += 1
        for account in existing[:AGAIN] + created[:AGAIN]:
            expected[account] = (f"Again {account}", expected[account][1])
            _dv_write(stack, "PATCH", f"accounts({ids[account]})", {"name": expected[account][0]})
            changes[account] += 1

    def missing() -> dict[str, Any]:
        rows = customers_with_prefix(stack, prefix)
        seen = {account: (row["OrganizationName"], row["PrimaryContactPhone"]) for account, row in rows.items()}
        return {account: seen.get(account) for account, values in expected.items() if seen.get(account) != values}

    try:
        eventually(lambda: not missing(), timeout=ARRIVAL, what="every Dataverse change reaching F&O")
    except AssertionError:
        raise AssertionError(f"not (or not right) in F&O: {missing()}") from None
    _wait_quiet(stack, dataverse, fno)
    assert _new_errors(stack, errors_before) == []
    _check_writes(_diff(fno.record_writes("CustomersV3"), fno_before), changes, _fno_address, "F&O")
    # nothing written back to Dataverse: its only writes are the test's own
    assert _diff(dataverse.record_writes("accounts"), dv_before) == {
        ids[account]: count for account, count in changes.items()}
