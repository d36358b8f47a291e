"""The simulator's instrumentation (`/admin/stats`) and outage switch (`/admin/outage`), on an own instance so
the counts are not disturbed by the other tests' traffic."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.fno import FnoSimulator, start_fno

pytestmark = pytest.mark.integration
CALLER = "7e3b9c1d-2a4f-4d6e-8b0a-9c1e5f7a3d22"


@pytest.fixture(scope="module")
def sim() -> Iterator[FnoSimulator]:
    started = start_fno("fno-stats", max_concurrent=0)
    try:
        yield started
    finally:
        started.process.stop()


@pytest.fixture()
def odata(sim: FnoSimulator) -> Iterator[httpx.Client]:
    httpx.delete(f"{sim.admin_url}outage").raise_for_status()
    httpx.post(f"{sim.admin_url}stats/reset").raise_for_status()
    with httpx.Client(base_url=sim.data_url, headers=sim.headers(oid=CALLER), timeout=30) as client:
        yield client


def stats(sim: FnoSimulator, **params: str) -> dict:
    r = httpx.get(f"{sim.admin_url}stats", params=params)
    r.raise_for_status()
    return r.json()


def customer(account: str, name: str | None = None) -> dict[str, object]:
    return {"CustomerAccount": account, "OrganizationName": name or f"Stats {account}", "CustomerGroupId": "30",
            "SalesCurrencyCode": "USD", "PartyType": "Organization"}


def request_part(method: str, url: str, body: dict[str, object] | None = None, content_id: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    http = f"{method} {url} HTTP/1.1\r\nAccept: application/json\r\n"
    http += ("Content-Type: application/json\r\n\r\n" + json.dumps(body)) if body is not None else "\r\n"
    return head + "\r\n" + http


def post_batch(odata: httpx.Client, items: list[str | list[str]]) -> httpx.Response:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append("--batch_s\r\n" + item + "\r\n")
        else:
            cs = f"changeset_s{i}"
            inner = "".join(f"--{cs}\r\n{p}\r\n" for p in item) + f"--{cs}--\r\n"
            out.append(f"--batch_s\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n{inner}")
    body = ("".join(out) + "--batch_s--\r\n").encode()
    return odata.post("$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=batch_s"})


def test_counts_reads_writes_and_writes_per_record(sim, odata):
    key = "CustomersV3(dataAreaId='usmf',CustomerAccount='ST-001')"
    assert odata.post("CustomersV3", json=customer("ST-001")).status_code == 201
    assert odata.patch(key, json={"OrganizationName": "Renamed"}).status_code == 204
    assert odata.patch(key, json={"OrganizationName": "Renamed"}).status_code == 204  # changes nothing
    assert odata.get(key).status_code == 200
    assert odata.get("CustomersV3", params={"$top": "2"}).status_code == 200
    assert odata.get("$metadata").status_code == 200
    assert odata.get("CustomersV3(dataAreaId='usmf',CustomerAccount='NOPE')").status_code == 404
    assert odata.delete(key).status_code == 204

    s = stats(sim)
    assert s["requests"] == {"total": 8, "reads": 4, "writes": 4, "batches": 0, "batch_operations": 0,
                             "batch_reads": 0, "batch_writes": 0, "throttled_429": 0, "unavailable_503": 0}
    assert s["status"] == {"200": 3, "201": 1, "204": 3, "404": 1}
    assert s["entity_sets"]["CustomersV3"] == {"writes": 4, "reads": 3, "rows_written": 3}
    assert s["entity_sets"]["$metadata"] == {"reads": 1}
    assert s["callers"] == {CALLER: {"requests": 8}}
    # Create, the one update that changed a value, delete: three committed writes of one record.
    assert s["record_writes"] == {"CustomersV3": {"dataAreaId='usmf',CustomerAccount='ST-001'": 3}}
    assert s["writes"] == {"total": 3, "by_operation": {"Create": 1, "Update": 1, "Delete": 1}, "records": 1,
                           "max_per_record": 3, "records_written_more_than_once": 1}
    assert "record_writes" not in stats(sim, records="false")

    assert httpx.post(f"{sim.admin_url}stats/reset").status_code == 204
    after = stats(sim)
    assert after["requests"]["total"] == 0 and after["writes"]["total"] == 0 and after["record_writes"] == {}


def test_batch_operations_and_rolled_back_changesets(sim, odata):
    r = post_batch(odata, [
        request_part("GET", "CustomerGroups?$top=1"),
        [request_part("POST", "CustomersV3", customer("ST-B1"), "1"),
         request_part("PATCH", "$1", {"OrganizationName": "Batch renamed"})],
        # Rolled back as a whole: the first create is not a committed write.
        [request_part("POST", "CustomersV3", customer("ST-B2")),
         request_part("POST", "CustomersV3", {"OrganizationName": "no key"})],
    ])
    assert r.status_code == 200 and r.text.count("HTTP/1.1 400") == 1, r.text
    assert odata.get("CustomersV3(dataAreaId='usmf',CustomerAccount='ST-B2')").status_code == 404

    s = stats(sim)
    assert s["requests"]["total"] == 2 and s["requests"]["batches"] == 1 and s["requests"]["reads"] == 1
    assert s["requests"]["batch_operations"] == 5
    assert s["requests"]["batch_reads"] == 1 and s["requests"]["batch_writes"] == 4
    assert s["entity_sets"]["$batch"] == {"requests": 1}
    assert s["entity_sets"]["CustomerGroups"] == {"batch_reads": 1}
    assert s["entity_sets"]["CustomersV3"] == {"batch_writes": 4, "rows_written": 2, "reads": 1}
    assert s["record_writes"] == {"CustomersV3": {"dataAreaId='usmf',CustomerAccount='ST-B1'": 2}}
    assert s["callers"] == {CALLER: {"requests": 2, "batch_operations": 5}}


def test_throttled_requests_are_counted():
    tight = start_fno("fno-stats-rate", max_concurrent=0, rate_limit=2, rate_window=60, seed="off")
    try:
        headers = tight.headers(oid=CALLER)
        codes = [httpx.get(tight.data_url + "Currencies", headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        s = stats(tight)
        assert s["requests"]["throttled_429"] == 1 and s["status"] == {"200": 2, "429": 1}
        assert s["entity_sets"]["Currencies"] == {"reads": 3, "throttled_429": 1}
    finally:
        tight.process.stop()


def test_outage_answers_503_with_retry_after_until_turned_off(sim, odata):
    on = httpx.post(f"{sim.admin_url}outage", json={"retryAfter": 4})
    assert on.status_code == 200 and on.json() == {"active": True, "remaining_seconds": None, "retry_after": 4}
    down = odata.post("CustomersV3", json=customer("ST-OUT"))
    assert down.status_code == 503 and down.headers["Retry-After"] == "4"
    assert down.headers["Content-Type"].startswith("application/json")
    error = down.json()["error"]
    assert error["code"] == "" and "Retry after 4 seconds" in error["message"]
    assert odata.get("CustomersV3").status_code == 503
    assert httpx.get(sim.data_url + "$metadata").status_code == 503  # unauthenticated too: the service is down
    assert post_batch(odata, [request_part("GET", "Currencies")]).status_code == 503
    # The admin API and the health probe keep working.
    assert httpx.get(f"{sim.admin_url}catalog").status_code == 200
    assert httpx.get(sim.url + "/").status_code == 200
    s = stats(sim)
    assert s["requests"]["unavailable_503"] == 4 and s["requests"]["total"] == 4
    assert s["requests"]["batch_operations"] == 0 and s["writes"]["total"] == 0
    assert s["entity_sets"]["CustomersV3"] == {"writes": 1, "reads": 1, "unavailable_503": 2}
    assert s["callers"] == {CALLER: {"requests": 3}, "anonymous": {"requests": 1}}

    off = httpx.delete(f"{sim.admin_url}outage")
    assert off.status_code == 200 and off.json()["active"] is False
    assert odata.get("CustomersV3(dataAreaId='usmf',CustomerAccount='ST-OUT')").status_code == 404  # nothing written


def test_outage_for_a_duration_ends_by_itself(sim, odata):
    on = httpx.post(f"{sim.admin_url}outage", json={"seconds": 1})
    assert on.json()["active"] is True and 0 < on.json()["remaining_seconds"] <= 1.0
    assert on.json()["retry_after"] == 10
    assert odata.get("Currencies").status_code == 503
    time.sleep(1.1)
    assert odata.get("Currencies").status_code == 200
    assert httpx.get(f"{sim.admin_url}outage").json() == {"active": False, "remaining_seconds": None,
                                                         "retry_after": 10}


@pytest.mark.parametrize("body", [{"seconds": -1}, {"seconds": True}, {"retryAfter": "5"}, [1]])
def test_outage_rejects_bad_bodies(sim, body):
    r = httpx.post(f"{sim.admin_url}outage", json=body)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json")
    assert httpx.get(f"{sim.admin_url}outage").json()["active"] is False
