"""The chaos suite's stacks (issue 18): the whole loop of tests/e2e, with a fault-injecting proxy (proxy.py) in
front of each simulator (the engine's DATAVERSE_URL and FNO_URL) and one in front of the host (APP_URL: the
webhooks and events the simulators deliver go through it, so a test can hold them and replay them). The proxies
pass everything on until a test turns faults on.

Sizes: `CHAOS_SCALE=bench` (bench/chaos.py sets it) makes each scenario longer and bigger; figures of each
scenario are printed and, when `CHAOS_FIGURES` names a file, appended to it as one JSON line (bench/chaos.py reads
them)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import free_port
from tests.chaos.proxy import FaultProxy
from tests.e2e.conftest import Stack, _deployed, eventually
from tests.fixtures.azurite import own_tables
from tests.fixtures.dataverse import start_dataverse
from tests.fixtures.devhost import FUNCTION_KEY, RunningHost
from tests.fixtures.fno import start_fno

BENCH = os.environ.get("CHAOS_SCALE", "test") == "bench"
INGEST_PATHS = {"/api/dataverse/webhook", "/api/fno/events"}


def scaled(test: int, bench: int) -> int:
    return bench if BENCH else test


def record_figures(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures; append them to $CHAOS_FIGURES (one JSON line) for the bench."""
    line = {"scenario": scenario, "scale": "bench" if BENCH else "test", **figures}
    print(f"\nchaos figures: {json.dumps(line)}")
    target = os.environ.get("CHAOS_FIGURES")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


@dataclass(eq=False)
class ChaosStack(Stack):
    dv_proxy: FaultProxy | None = None
    fno_proxy: FaultProxy | None = None
    host_proxy: FaultProxy | None = None

    def faults(self, p429: float = 0.0, p503: float = 0.0, pdrop: float = 0.0, *, reset: bool = True,
               drop_next_writes: int = 0) -> None:
        for proxy in (self.dv_proxy, self.fno_proxy):
            assert proxy is not None
            proxy.faults(p429, p503, pdrop, reset=reset, drop_next_writes=drop_next_writes)


@contextlib.contextmanager
def chaos_stack(azurite: str, servicebus: Any, devhost: Callable[..., RunningHost], *, proxies: bool = True,
                **settings: str) -> Iterator[ChaosStack]:
    """Both simulators (seeded, Dataverse without low limits: the proxies throttle), three proxies, and a host over
    them with deployment on; `settings` add to the host's own. `servicebus` is an emulator fixture object."""
    dataverse = start_dataverse()
    fno = start_fno("fno-chaos")
    port = free_port()
    started: list[FaultProxy] = []
    dv_proxy = fno_proxy = host_proxy = None
    if proxies:
        dv_proxy = FaultProxy(dataverse.url).start()
        fno_proxy = FaultProxy(fno.url, seed=19).start()
        host_proxy = FaultProxy(f"http://127.0.0.1:{port}", seed=20).start()
        started = [dv_proxy, fno_proxy, host_proxy]
    host = devhost(
        "function_app:app", port=port,
        APP_URL=host_proxy.url if host_proxy else f"http://127.0.0.1:{port}", INGEST_KEY=FUNCTION_KEY,
        DEPLOY_ON_START="true", DATAVERSE_URL=dv_proxy.url if dv_proxy else dataverse.url,
        FNO_URL=fno_proxy.url if fno_proxy else fno.url, AUTH_MODE="local",
        SERVICEBUS_CONNECTION=servicebus.connection_string, TABLE_STORAGE_CONNECTION=azurite,
        CHANGES_QUEUE=servicebus.take("changes"), FNO_EVENTS_QUEUE=servicebus.take("plain"),
        SYNC_PAGES_QUEUE=servicebus.take("pages"),
        APPLY_MAX_ATTEMPTS="8", APPLY_BACKOFF_CAP_SECONDS="8", APPLY_AUTO_PAUSE_SECONDS="300",
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
        yield ChaosStack(host, dataverse, fno, dv, fo, admin, dv_proxy, fno_proxy, host_proxy)
    finally:
        for client in (dv, fo, admin):
            client.close()
        host.process.stop()
        for proxy in started:
            proxy.stop()
        dataverse.stop()
        fno.process.stop()


@pytest.fixture(scope="package")
def azurite() -> Iterator[str]:
    """The chaos suite's own Azurite: its stacks sweep and replay the seeded records (US-002 ...), and their links
    and activity entries, left in the session's Azurite, were counted by tests/e2e as their own."""
    yield from own_tables()


@pytest.fixture(scope="package")
def stack(azurite: str, servicebus_emulator: Any, devhost: Callable[..., RunningHost]) -> Iterator[ChaosStack]:
    with chaos_stack(azurite, servicebus_emulator, devhost) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    stack = next((v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Stack)), None)
    if report.when == "call" and report.failed and isinstance(stack, Stack):
        report.sections.append(("host log (tail)", stack.host.log()[-6000:]))
        for name, read in (("activity (newest first)", stack.activity), ("error log", stack.errors)):
            try:
                rows = read()[:25]
            except Exception as error:  # the report must not hide the failure it explains
                rows = [{"could not read": repr(error)}]
            report.sections.append((name, "\n".join(map(str, rows))))


def wait_quiet(stack: Stack, *, quiet: float = 3.0, timeout: float = 120.0) -> None:
    """Until both simulators have delivered their events and nobody writes to either any more."""
    from tests.e2e.conftest import drain, dv_stats, fno_stats

    def still() -> bool:
        drain(stack)
        before = (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"])
        time.sleep(quiet)
        drain(stack)
        return before == (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"])

    eventually(still, timeout=timeout, what="both sides to stop being written")
