"""Service protection limits per caller (reference §2.10), on simulators started with low limits."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack.dataverse.registration import register_webhook
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.http_receiver import HttpReceiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def five_requests() -> Iterator[DataverseSim]:
    sim = start_dataverse("--limit-requests", "5", "--limit-window", "300", seed=False)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def one_at_a_time() -> Iterator[DataverseSim]:
    sim = start_dataverse("--limit-concurrency", "1", "--limit-execution", "2", "--limit-requests", "100000",
                          seed=False)
    try:
        yield sim
    finally:
        sim.stop()


def test_request_limit_answers_429_with_retry_after_per_caller(five_requests):
    caller = str(uuid.uuid4())
    with five_requests.client(oid=caller) as client:
        assert [client.get("WhoAmI").status_code for _ in range(5)] == [200] * 5
        r = client.get("WhoAmI")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert r.json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 5 over time window of 300 seconds.",
    }
    with five_requests.client(oid=str(uuid.uuid4())) as other:
        assert other.get("WhoAmI").status_code == 200


def test_a_batch_counts_as_one_request(five_requests):
    with five_requests.client(oid=str(uuid.uuid4())) as client:
        boundary = "batch_x"
        part = ("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                "GET /api/data/v9.2/WhoAmI HTTP/1.1\r\n\r\n")
        body = f"--{boundary}\r\n{part}\r\n" * 20 + f"--{boundary}--\r\n"
        for _ in range(5):
            r = client.post("$batch", content=body.encode(),
                            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
            assert r.status_code == 200 and r.text.count("HTTP/1.1 200 OK") == 20
        assert client.get("WhoAmI").status_code == 429


def test_concurrency_then_execution_time_limits(one_at_a_time, receiver: HttpReceiver):
    receiver.answer("/slow", (200, 1.2))
    with one_at_a_time.client(oid=str(uuid.uuid4())) as admin:
        reg = register_webhook(admin, receiver.url("/slow"), entity="account", message="Create", mode=0, stage=20)
    caller = str(uuid.uuid4())
    results: list[int] = []

    def slow_create(client: httpx.Client) -> None:
        results.append(client.post("accounts", json={"name": "slow"}).status_code)

    with one_at_a_time.client(oid=caller) as client:
        worker = threading.Thread(target=slow_create, args=(client,))
        worker.start()
        receiver.wait_for("/slow", 1)  # the create is now in flight, waiting on the webhook
        busy = client.get("WhoAmI")
        worker.join()
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "0x80072326"
        assert busy.headers["Retry-After"]
        slow_create(client)  # 1.2 s + 1.2 s of execution time > the 2 s budget
        spent = client.get("WhoAmI")
    assert results == [204, 204]
    assert spent.status_code == 429 and spent.json()["error"]["code"] == "0x80072321"
    assert int(spent.headers["Retry-After"]) > 0
    with one_at_a_time.client(oid=str(uuid.uuid4())) as admin:
        reg.remove(admin)
