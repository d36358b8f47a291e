"""The simulator's instrumentation (`/_sim/stats`) and outage switch (`/_sim/outage`), on an own instance so
the counts are not disturbed by the other tests' traffic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.dataverse import DataverseSim, start_dataverse

pytestmark = pytest.mark.integration
API = "/api/data/v9.2/"
CALLER = "0c6f3a2e-7d41-4b8e-9a55-2f1e6d3c4b71"


@pytest.fixture(scope="module")
def sim() -> Iterator[DataverseSim]:
    started = start_dataverse(seed=False)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture()
def api(sim: DataverseSim) -> Iterator[httpx.Client]:
    httpx.delete(f"{sim.url}/_sim/outage").raise_for_status()
    httpx.post(f"{sim.url}/_sim/stats/reset").raise_for_status()
    with sim.client(oid=CALLER) as client:
        yield client


def stats(sim: DataverseSim, **params: str) -> dict:
    r = httpx.get(f"{sim.url}/_sim/stats", params=params)
    r.raise_for_status()
    return r.json()


def part(method: str, url: str, body: str = "", content_id: str | None = None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1", "Content-Type: application/json; type=entry", "", body]
    return "\r\n".join(lines)


def batch(api: httpx.Client, items: list[str | list[str]]) -> httpx.Response:
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = []
    for item in items:
        if isinstance(item, list):
            cs = f"changeset_{uuid.uuid4().hex}"
            inner = "".join(f"--{cs}\r\n{p}\r\n" for p in item) + f"--{cs}--"
            chunks.append(f"Content-Type: multipart/mixed; boundary={cs}\r\n\r\n{inner}")
        else:
            chunks.append(item)
    body = "".join(f"--{boundary}\r\n{c}\r\n" for c in chunks) + f"--{boundary}--\r\n"
    return api.post("$batch", content=body.encode(),
                    headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})


def test_counts_reads_writes_and_writes_per_row(sim, api):
    created = api.post("accounts", json={"name": "Stats one"}, headers={"Prefer": "return=representation"})
    assert created.status_code == 201
    row_id = created.json()["accountid"]
    assert api.patch(f"accounts({row_id})", json={"name": "Stats two"}).status_code == 204
    assert api.get(f"accounts({row_id})").status_code == 200
    assert api.get("accounts", params={"$select": "name"}).status_code == 200
    assert api.get("WhoAmI").status_code == 200
    assert api.get("accounts(00000000-0000-0000-0000-000000000001)").status_code == 404
    other = api.post("contacts", json={"lastname": "Stats"})
    assert other.status_code == 204

    s = stats(sim)
    assert s["requests"] == {"total": 7, "reads": 4, "writes": 3, "batches": 0, "batch_operations": 0,
                             "batch_reads": 0, "batch_writes": 0, "throttled_429": 0, "unavailable_503": 0}
    assert s["status"] == {"200": 3, "201": 1, "204": 2, "404": 1}
    assert s["entity_sets"]["accounts"] == {"writes": 2, "reads": 3, "rows_written": 2}
    assert s["entity_sets"]["WhoAmI"] == {"reads": 1}
    assert s["callers"] == {CALLER: {"requests": 7}}
    assert s["record_writes"]["accounts"] == {row_id: 2}
    assert s["writes"] == {"total": 3, "by_message": {"Create": 2, "Update": 1}, "records": 2,
                           "max_per_record": 2, "records_written_more_than_once": 1}
    assert "record_writes" not in stats(sim, records="false")

    assert httpx.post(f"{sim.url}/_sim/stats/reset").status_code == 204
    after = stats(sim)
    assert after["requests"]["total"] == 0 and after["writes"]["total"] == 0 and after["record_writes"] == {}


def test_batch_operations_upsert_multiple_and_rolled_back_changesets(sim, api):
    number = "ST-" + uuid.uuid4().hex[:6]
    r = batch(api, [
        part("GET", f"{API}accounts?$select=name"),
        [part("POST", f"{API}accounts", f'{{"name":"In set","accountnumber":"{number}"}}', "1"),
         part("PATCH", "$1", '{"name":"In set, renamed"}')],
        # A changeset that fails on its second request rolls back: its first write is not counted.
        [part("POST", f"{API}accounts", '{"name":"Rolled back"}'),
         part("POST", f"{API}accounts", '{"name":"%s"}' % ("x" * 1000))],  # longer than MaxLength
    ])
    assert r.status_code == 400, r.text  # the failed changeset stops the batch
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.product", "name": f"P{i}",
                "productnumber": f"{number}-{i}"} for i in range(3)]
    multiple = api.post("products/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    assert multiple.status_code == 200, multiple.text

    s = stats(sim)
    assert s["requests"]["total"] == 2
    assert s["requests"]["batches"] == 1 and s["requests"]["writes"] == 1
    assert s["requests"]["batch_operations"] == 5
    assert s["requests"]["batch_reads"] == 1 and s["requests"]["batch_writes"] == 4
    assert s["entity_sets"]["$batch"] == {"requests": 1}
    assert s["entity_sets"]["accounts"] == {"batch_reads": 1, "batch_writes": 4, "rows_written": 2}  # `$1` too
    # POST + PATCH of the committed changeset hit one row; the rolled-back create counts nothing.
    assert list(s["record_writes"]["accounts"].values()) == [2]
    assert s["entity_sets"]["products"] == {"writes": 1, "rows_written": 3}
    assert sorted(s["record_writes"]["products"].values()) == [1, 1, 1]
    assert s["callers"] == {CALLER: {"requests": 2, "batch_operations": 5}}


def test_throttled_requests_are_counted():
    limited = start_dataverse("--limit-requests", "2", "--limit-window", "300", seed=False)
    try:
        with limited.client(oid=CALLER) as client:
            codes = [client.get("WhoAmI").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        s = stats(limited)
        assert s["requests"]["throttled_429"] == 1 and s["status"] == {"200": 2, "429": 1}
        assert s["entity_sets"]["WhoAmI"] == {"reads": 3, "throttled_429": 1}
    finally:
        limited.stop()


def test_outage_answers_503_with_retry_after_until_turned_off(sim, api):
    on = httpx.post(f"{sim.url}/_sim/outage", json={"retryAfter": 7})
    assert on.status_code == 200 and on.json() == {"active": True, "remaining_seconds": None, "retry_after": 7}
    down = api.post("accounts", json={"name": "during outage"})
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "7"
    assert down.headers["Content-Type"].startswith("application/json")
    error = down.json()["error"]
    assert error["code"] == "0x80040216" and "Retry after 7 seconds" in error["message"]
    assert api.get("WhoAmI").status_code == 503
    assert httpx.post(f"{api.base_url}WhoAmI").status_code == 503  # even unauthenticated: the service is down
    assert batch(api, [part("GET", f"{API}WhoAmI")]).status_code == 503
    # Test routes keep working.
    assert httpx.get(f"{sim.url}/_sim/health").status_code == 200
    assert httpx.get(f"{sim.url}/_sim/outage").json()["active"] is True
    s = stats(sim)
    assert s["requests"]["unavailable_503"] == 4 and s["requests"]["total"] == 4
    assert s["requests"]["batch_operations"] == 0 and s["writes"]["total"] == 0
    assert s["entity_sets"]["accounts"] == {"writes": 1, "unavailable_503": 1}
    assert s["callers"][CALLER] == {"requests": 3} and s["callers"]["anonymous"] == {"requests": 1}
    assert api.get("accounts", params={"$filter": "name eq 'during outage'"}).status_code == 503

    off = httpx.delete(f"{sim.url}/_sim/outage")
    assert off.status_code == 200 and off.json()["active"] is False
    assert api.get("accounts", params={"$filter": "name eq 'during outage'"}).json()["value"] == []


def test_outage_for_a_duration_ends_by_itself(sim, api):
    on = httpx.post(f"{sim.url}/_sim/outage", json={"seconds": 1.0})
    assert on.json()["active"] is True and 0 < on.json()["remaining_seconds"] <= 1.0
    assert on.json()["retry_after"] == 10
    assert api.get("WhoAmI").status_code == 503
    time.sleep(1.1)
    assert api.get("WhoAmI").status_code == 200
    assert httpx.get(f"{sim.url}/_sim/outage").json() == {"active": False, "remaining_seconds": None,
                                                          "retry_after": 10}


@pytest.mark.parametrize("body", [{"seconds": 0}, {"seconds": "120"}, {"retryAfter": 1.5}, [1]])
def test_outage_rejects_bad_bodies(sim, body):
    r = httpx.post(f"{sim.url}/_sim/outage", json=body)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == 400 and r.json()["detail"]
    assert httpx.get(f"{sim.url}/_sim/outage").json()["active"] is False
