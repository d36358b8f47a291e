"""Per-caller throttling: 429 with Retry-After for too many concurrent requests or too many in a window."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.fno import FnoSimulator, start_fno

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tight_rate() -> Iterator[FnoSimulator]:
    """A simulator allowing 3 requests per minute per caller (no concurrency cap)."""
    sim = start_fno("fno-rate", max_concurrent=0, rate_limit=3, rate_window=60, seed="off")
    try:
        yield sim
    finally:
        sim.process.stop()


@pytest.fixture(scope="module")
def tight_concurrency() -> Iterator[FnoSimulator]:
    """A simulator allowing 1 request in flight per caller (no rate budget)."""
    sim = start_fno("fno-concurrency", max_concurrent=1, rate_limit=0)
    try:
        yield sim
    finally:
        sim.process.stop()


def test_rate_budget_per_caller(tight_rate: FnoSimulator) -> None:
    tight = tight_rate
    a = tight.headers(oid="aaaaaaaa-0000-0000-0000-000000000001")
    b = tight.headers(oid="bbbbbbbb-0000-0000-0000-000000000002")
    for _ in range(3):
        assert httpx.get(tight.data_url + "Currencies", headers=a).status_code == 200
    throttled = httpx.get(tight.data_url + "Currencies", headers=a)
    assert throttled.status_code == 429
    retry_after = int(throttled.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert "Too many requests" in throttled.json()["error"]["message"]
    assert httpx.get(tight.data_url + "Currencies", headers=b).status_code == 200  # another caller's budget


def test_concurrency_cap_per_caller(tight_concurrency: FnoSimulator) -> None:
    tight = tight_concurrency
    headers = tight.headers(oid="cccccccc-0000-0000-0000-000000000003")
    token = headers["Authorization"]
    # A request whose body has not fully arrived is in flight: the server is waiting for it.
    first, rest = b'{"VendorGroupId"', b': "T-1", "Description": "late body"}'
    with socket.create_connection(("127.0.0.1", tight.port)) as stalled:
        stalled.sendall(
            (f"POST /data/VendorGroups HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(first) + len(rest)}\r\n\r\n").encode() + first
        )
        second = None
        for _ in range(50):  # until the server has read the stalled request's headers
            second = httpx.get(tight.data_url + "Currencies", headers=headers)
            if second.status_code == 429:
                break
        assert second is not None and second.status_code == 429
        assert second.headers["retry-after"] == "1"
        other_caller = tight.headers(oid="dddddddd-0000-0000-0000-000000000004")
        other = httpx.get(tight.data_url + "Currencies", headers=other_caller)
        assert other.status_code == 200  # the cap is per caller
        stalled.sendall(rest)
        answer = stalled.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 201"), answer
    assert httpx.get(tight.data_url + "Currencies", headers=headers).status_code == 200
