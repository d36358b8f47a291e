"""A graceful stop closes every client the app opened: the runtime's close, and the host calling it on SIGTERM and
SIGINT (before, each stop logged aiohttp's "Unclosed client session" for the Table Storage client)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from core.settings import load_settings
from functions import runtime as runtime_module
from functions.runtime import Runtime, close_on_stop, close_runtime
from tests.fixtures.devhost import RunningHost
from tests.unit.test_settings import VALID


class _Client:
    def __init__(self, name: str, closed: list[str], fail: bool = False) -> None:
        self.name, self.closed, self.fail = name, closed, fail

    async def _close(self) -> None:
        if self.fail:
            raise OSError("connection reset while closing")
        self.closed.append(self.name)

    aclose = close = _close


async def test_close_closes_what_was_made_and_only_that(caplog: pytest.LogCaptureFixture) -> None:
    runtime = Runtime(load_settings(VALID))
    await runtime.close()  # nothing made: nothing to close, and closing makes nothing
    assert not {"tables", "queue", "dataverse", "fno", "alert_http", "meter"} & set(runtime.__dict__)

    closed: list[str] = []
    for name in ("dataverse", "fno", "fno_admin", "alert_http", "queue", "page_jobs", "tables", "meter"):
        runtime.__dict__[name] = _Client(name, closed, fail=name == "fno")
    await runtime.close()
    assert closed[0] == "meter" and closed[-1] == "tables"  # counts written first, Table Storage closed last
    assert set(closed) == {"dataverse", "fno_admin", "alert_http", "queue", "page_jobs", "tables", "meter"}
    assert "closing fno failed (OSError)" in caplog.text  # one that fails does not keep the others open


async def test_close_runtime_forgets_the_runtime() -> None:
    closed: list[str] = []
    runtime = Runtime(load_settings(VALID))
    runtime.__dict__["tables"] = _Client("tables", closed)
    runtime_module.reset_runtime(runtime)
    await close_runtime()
    assert closed == ["tables"] and runtime_module._runtime is None
    await close_runtime()  # none built: nothing to do


async def test_close_runtime_closes_what_entry_points_handed_it(caplog: pytest.LogCaptureFixture) -> None:
    """The virtual table service's clients live outside the runtime (functions/odata.py, vt_events.py): they are
    closed on the same stop, a failing one does not keep the others open, and each is closed once."""
    closed: list[str] = []
    close_on_stop("virtual table service", _Client("virtual table service", closed).aclose)
    close_on_stop("teller", _Client("teller", closed, fail=True).aclose)
    close_on_stop("notifier", _Client("old notifier", closed).aclose)
    close_on_stop("notifier", _Client("notifier", closed).aclose)  # the same name again: replaces the first
    await close_runtime()
    assert closed == ["virtual table service", "notifier"]
    assert "closing teller failed (OSError)" in caplog.text
    await close_runtime()
    assert closed == ["virtual table service", "notifier"]


@pytest.mark.integration
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_graceful_stop_leaves_nothing_unclosed(devhost: Callable[..., RunningHost], azurite: str,
                                                 servicebus_emulator: Any, stop: signal.Signals) -> None:
    host = devhost(TABLE_STORAGE_CONNECTION=azurite, SERVICEBUS_CONNECTION=servicebus_emulator.connection_string,
                   CHANGES_QUEUE=servicebus_emulator.take("changes"),
                   FNO_EVENTS_QUEUE=servicebus_emulator.take("plain"),
                   SYNC_PAGES_QUEUE=servicebus_emulator.take("pages"), DEPLOY_ON_START="false",
                   VIRTUAL_TABLES_KEY="stop-test-key", TEST_STOP_SIGNAL=stop.name)  # one host per signal
    admin = {"x-functions-key": host.master_key}
    with httpx.Client(base_url=f"{host.url}/api/", timeout=60) as client:
        # Table Storage, Service Bus (the changes queue's sender), the alert channels' HTTP client, the dead letters
        assert client.get("health").status_code == 200
        assert client.get("manage/v1/activity", headers=admin).status_code == 200
        assert client.post("manage/v1/alerts/evaluate", headers=admin).status_code == 200
        assert client.get("manage/v1/errors", headers=admin).status_code == 200
        ingest = client.post("fno/events", headers={"x-functions-key": host.function_key}, json=[])
        assert ingest.status_code in (202, 400), ingest.text
        # the virtual table service's own Table Storage client (a table kept in Table Storage)
        warehouses = client.get("odata/Warehouses", headers={"x-vt-key": "stop-test-key"}, params={"$top": "1"})
        assert warehouses.status_code == 200, warehouses.text
    process = host.process.proc
    assert process is not None
    os.killpg(process.pid, stop)
    try:
        assert process.wait(30) == 0
    except subprocess.TimeoutExpired:
        host.process.stop()
        raise AssertionError("the host did not stop within 30 s of " + stop.name) from None
    log = host.log()
    assert "host stopped" in log
    assert "Unclosed" not in log and "Traceback" not in log, log[-4000:]
