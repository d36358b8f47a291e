"""Initial sync against a Dataverse whose service protection is low (the e2e package's stack: 20 requests
per 2 s per caller): the run slows down and finishes; throttling fails no row. Named to run after the
live-sync files of the package: the run rewrites the seeded customers and uses up the engine's quota."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_initial_sync import by_map, customer, finished, start

pytestmark = pytest.mark.e2e


def test_service_protection_slows_an_initial_sync_and_fails_no_row(stack: Stack) -> None:
    rows = 600
    httpx.post(f"{stack.fno.admin_url}load", json={"entity": "CustomersV3", "rows": [
        customer(f"TH-{n:04d}") for n in range(rows)]}, timeout=120).raise_for_status()
    throttled_before = httpx.get(f"{stack.dataverse.url}/_sim/stats", params={"records": "false"},
                                 timeout=30).json()["status"].get("429", 0)

    run = finished(stack, start(stack, kind="initial", maps=["customers"]), timeout=280)

    customers = by_map(run)["customers"]
    assert customers["failed"] == 0 and customers["written"] >= rows
    throttled = httpx.get(f"{stack.dataverse.url}/_sim/stats", params={"records": "false"},
                          timeout=30).json()["status"].get("429", 0) - throttled_before
    assert throttled > 0, "the run never met service protection: nothing was tested"
    loaded = stack.rows("accounts", **{"$select": "accountnumber", "$filter": "startswith(accountnumber,'TH-')"})
    assert len(loaded) == rows
