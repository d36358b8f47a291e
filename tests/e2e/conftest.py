"""The whole loop, as a user runs it: Azurite, the emulator, both simulators (seeded) and the local
Functions host serving function_app.py with the shipped maps, deployment on (webhook steps registered
in Dataverse, data events activated in F&O, both pointing at the host). Tests talk HTTP only.

One stack per package: the simulators are this package's own (the tests change data and register
webhooks), Dataverse with service protection turned low so that throttling is part of every run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from core.connectors.batch import BatchOp, build_batch, parse_batch
from devstack.processes import free_port
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.devhost import FUNCTION_KEY, RunningHost
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.security.logscan import read_logs, secret_lines

T = TypeVar("T")
# Low enough that a burst of changes meets 429s, high enough for the suite to move.
DATAVERSE_LIMITS = ("--limit-requests", "20", "--limit-window", "2")


@dataclass(eq=False)
class Stack:
    host: RunningHost
    dataverse: DataverseSim
    fno: FnoSimulator
    dv: httpx.Client
    fo: httpx.Client
    admin: httpx.Client

    def activity(self, **params: Any) -> list[dict[str, Any]]:
        response = self.admin.get("/api/manage/v1/activity", params={"limit": 1000, **params})
        response.raise_for_status()
        return response.json()["entries"]

    def errors(self, **params: Any) -> list[dict[str, Any]]:
        response = self.admin.get("/api/manage/v1/errors", params={"limit": 1000, **params})
        response.raise_for_status()
        return response.json()["errors"]

    def rows(self, entity_set: str, **params: str) -> list[dict[str, Any]]:
        """A Dataverse query as the test user; that user is throttled too, so wait out its 429s."""
        for _ in range(60):
            response = self.dv.get(entity_set, params=params)
            if response.status_code != 429:
                response.raise_for_status()
                return response.json()["value"]
            time.sleep(float(response.headers.get("Retry-After", "1")))
        raise AssertionError(f"{entity_set}: throttled for too long")

    @functools.cache  # noqa: B019  (one stack per package; company ids never change)
    def company_id(self, code: str) -> str:
        return self.rows("cdm_companies", **{"$filter": f"cdm_companycode eq '{code}'"})[0]["cdm_companyid"]

    def account(self, number: str, company: str = "usmf") -> dict[str, Any] | None:
        rows = self.rows("accounts", **{
            "$filter": f"accountnumber eq '{number}' and _msdyn_company_value eq {self.company_id(company)}"})
        return rows[0] if rows else None

    def customer(self, account: str, company: str = "usmf") -> dict[str, Any] | None:
        response = self.fo.get(f"CustomersV3(dataAreaId='{company}',CustomerAccount='{account}')",
                               params={"cross-company": "true"})
        return response.json() if response.status_code == 200 else None


def eventually(probe: Callable[[], T | None], *, timeout: float = 45.0, what: str = "the change") -> T:
    """Poll until `probe` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last seen: {last!r})")


# -- what several tests use: mass writes as `$batch`, the simulators' write counts --------------------------
def send_batch(client: httpx.Client, ops: list[BatchOp], *, each_write_atomic: bool) -> None:
    content_type, body = build_batch(ops, each_write_atomic=each_write_atomic)
    for _ in range(60):  # the test user is throttled too (Dataverse here allows 20 requests per 2 s)
        response = client.post("$batch", content=body, headers={
            "Content-Type": content_type, "Prefer": "odata.continue-on-error"})
        if response.status_code != 429:
            break
        time.sleep(float(response.headers.get("Retry-After", "1")))
    assert response.status_code == 200, response.text[:500]
    results = parse_batch(response.headers["Content-Type"], response.content)
    assert [r.status for r in results if not r.ok] == [], [r.body_text for r in results if not r.ok][:3]


def fno_stats(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"{stack.fno.admin_url}stats", timeout=30).json()


def dv_stats(stack: Stack) -> dict[str, Any]:
    return httpx.get(stack.dataverse.url.rstrip("/") + "/_sim/stats", timeout=30).json()


def reset_stats(stack: Stack) -> None:
    httpx.post(f"{stack.fno.admin_url}stats/reset", timeout=30).raise_for_status()
    httpx.post(stack.dataverse.url.rstrip("/") + "/_sim/stats/reset", timeout=30).raise_for_status()


def drain(stack: Stack, timeout: float = 120) -> None:
    """Until both simulators have delivered (or given up on) every webhook and event. F&O sends one endpoint's
    events in order, each retried 3 times a second apart when the app is down: give a big burst to a dead host time."""
    stack.dataverse.drain()
    httpx.post(f"{stack.fno.admin_url}drain", timeout=timeout).raise_for_status()


def customers_with_prefix(stack: Stack, prefix: str) -> dict[str, dict[str, Any]]:
    """USMF customers in F&O whose account starts with `prefix`, by account (name and phone)."""
    response = stack.fo.get("CustomersV3", params={
        "cross-company": "true", "$filter": f"dataAreaId eq 'usmf' and CustomerAccount eq '{prefix}*'",
        "$select": "CustomerAccount,OrganizationName,PrimaryContactPhone"})
    response.raise_for_status()
    return {row["CustomerAccount"]: row for row in response.json()["value"]}


def accounts_with_prefix(stack: Stack, prefix: str) -> dict[str, dict[str, Any]]:
    """USMF accounts in Dataverse whose number starts with `prefix`, by number (id, name and phone)."""
    rows = stack.rows("accounts", **{"$select": "accountid,accountnumber,name,telephone1", "$filter": (
        f"_msdyn_company_value eq {stack.company_id('usmf')} and startswith(accountnumber,'{prefix}')")})
    return {row["accountnumber"]: row for row in rows}


def new_customer(stack: Stack, account: str, **fields: Any) -> None:
    """A USMF organization customer created in F&O, once it has reached Dataverse."""
    response = stack.fo.post("CustomersV3", json={
        "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": f"{account} Ltd",
        "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30",
        **fields})
    assert response.status_code == 201, response.text
    eventually(lambda: stack.account(account), timeout=60, what=f"customer {account} reaching Dataverse")


def change_customer(stack: Stack, account: str, **fields: Any) -> None:
    """Change a USMF customer in F&O."""
    response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')",
                              params={"cross-company": "true"}, json=fields)
    assert response.status_code == 204, response.text


def account_column(stack: Stack, account: str, column: str) -> Any:
    """One column of the USMF account synced from customer `account`; None while there is none."""
    row = stack.account(account)
    return row.get(column) if row else None


def maps_loaded(stack: Stack) -> dict[str, Any]:
    """When the host loaded its running maps, and why newer ones do not run (the modes view)."""
    response = stack.admin.get("/api/manage/v1/modes")
    response.raise_for_status()
    body = response.json()
    return {"maps_loaded_at": body["maps_loaded_at"], "maps_problem": body["maps_problem"]}


def _deployed(dataverse: DataverseSim, fno: FnoSimulator) -> bool:
    try:
        return _registered(dataverse, fno)
    except (KeyError, httpx.HTTPError):  # throttled or not up yet: ask again
        return False


def _registered(dataverse: DataverseSim, fno: FnoSimulator) -> bool:
    with dataverse.client() as client:
        endpoints = client.get("serviceendpoints", params={"$filter": "name eq 'dw-oss ingest'"}).json()["value"]
        steps = client.get("sdkmessageprocessingsteps", params={"$select": "name"}).json()["value"]
    activations = httpx.get(f"{fno.admin_url}activations", timeout=10).json()
    active = activations.get("value", activations) if isinstance(activations, dict) else activations
    return bool(endpoints) and any(s["name"].startswith("dw-oss:") for s in steps) and bool(active)


@contextlib.contextmanager
def running_stack(azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost], *,
                  dataverse_flags: tuple[str, ...] = DATAVERSE_LIMITS, **settings: str) -> Iterator[Stack]:
    """Both simulators (seeded), and a host over them with deployment on; `settings` add to its own.

    The sweep (what was missed while the app was down) is off unless a test turns it on: a sweep falling inside a
    test that counts a record's writes or activity adds its own (see the issue-18 note), and tests/e2e/test_down.py
    and tests/chaos test it on purpose."""
    settings.setdefault("SWEEP_ENABLED", "false")
    dataverse = start_dataverse(*dataverse_flags)
    fno = start_fno("fno-e2e")
    port = free_port()
    host = devhost(
        "function_app:app", port=port,
        APP_URL=f"http://127.0.0.1:{port}", INGEST_KEY=FUNCTION_KEY, DEPLOY_ON_START="true",
        DATAVERSE_URL=dataverse.url, FNO_URL=fno.url, AUTH_MODE="local",
        SERVICEBUS_CONNECTION=servicebus_emulator.connection_string, TABLE_STORAGE_CONNECTION=azurite,
        CHANGES_QUEUE=servicebus_emulator.take("changes"), FNO_EVENTS_QUEUE=servicebus_emulator.take("plain"),
        SYNC_PAGES_QUEUE=servicebus_emulator.take("pages"),
        APPLY_MAX_ATTEMPTS="5",
        # Outage retries back off 0.5 s doubling up to this cap (300 s by default): a target back from
        # two minutes down is retried within 30 s, which keeps test_outage.py short.
        APPLY_BACKOFF_CAP_SECONDS="30",
        # A target down this long pauses the map (300 s by default): test_outage.py's two minutes do.
        APPLY_AUTO_PAUSE_SECONDS="45",
        **settings,
    )
    try:
        eventually(lambda: _deployed(dataverse, fno), timeout=90, what="deployment of webhooks and events")
    except AssertionError:
        raise AssertionError("deployment did not finish; host log:\n" + host.log()[-5000:]) from None
    dv = dataverse.client()
    fo = httpx.Client(base_url=fno.data_url.rstrip("/") + "/", headers=fno.headers(), timeout=30)
    admin = httpx.Client(base_url=host.url, headers={"x-functions-key": host.master_key}, timeout=30)
    try:
        yield Stack(host, dataverse, fno, dv, fo, admin)
    finally:
        for client in (dv, fo, admin):
            client.close()
        host.process.stop()
        dataverse.stop()
        fno.process.stop()
    # Reached when the stack ends normally: no log of the run holds a key (issue 18, security checks).
    leaks = secret_lines(read_logs({"host": host.process.log_path, "dataverse simulator": dataverse.process.log_path,
                                    "F&O simulator": fno.process.log_path}),
                         {"function (ingest) key": FUNCTION_KEY, "master key": host.master_key})
    assert leaks == [], "secrets in the logs of the e2e stack:\n" + "\n".join(leaks)


@pytest.fixture(scope="package")
def stack(azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    with running_stack(azurite, servicebus_emulator, devhost) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    stack = next((v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Stack)), None)
    if report.when == "call" and report.failed and isinstance(stack, Stack):
        log_text = stack.host.log()
        report.sections.append(("host log (tail)", log_text[-6000:]))
        keep = os.environ.get("E2E_LOG_DIR")
        if keep:  # the whole host log, for a failure that the tail does not explain
            folder = Path(keep) / f"{item.name}-{int(time.time())}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "host.log").write_text(log_text)
            for name, process in (("dataverse", stack.dataverse.process), ("fno", stack.fno.process)):
                (folder / f"{name}.log").write_text(process.log_path.read_text(errors="replace"))
            report.sections.append(("logs (whole)", str(folder)))
        for name, read in (("activity (newest first)", stack.activity), ("error log", stack.errors)):
            try:
                rows = read()[:25]
            except Exception as error:  # the report must not hide the failure it explains
                rows = [{"could not read": repr(error)}]
            report.sections.append((name, "\n".join(map(str, rows))))


def settle(stack: Stack, *, map: str, key: str, quiet: float = 1.5, timeout: float = 60.0,
           since: datetime | None = None) -> list[dict[str, Any]]:
    """Wait until both simulators have delivered their events and the engine has stopped recording
    activity for the record (echoes included); return that activity, newest first: only what was recorded from
    `since` on when given (a test counting a record's writes must not count an earlier test's)."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        stack.dataverse.drain()
        httpx.post(f"{stack.fno.admin_url}drain", timeout=120).raise_for_status()
        time.sleep(quiet)
        entries = [e for e in stack.activity(map=map, key=key)
                   if since is None or datetime.fromisoformat(e["at"]) >= since]
        if len(entries) == seen and not any(e["outcome"] == "retrying" for e in entries[:1]):
            return entries
        seen = len(entries)
    raise AssertionError(f"activity of {map} {key} kept changing for {timeout:.0f} s")
