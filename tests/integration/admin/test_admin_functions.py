"""Admin functions through the local host, with Azurite and the Service Bus emulator behind them."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from core.events.model import ChangeEvent
from core.store.activity import ActivityEntry, ActivityLog
from core.store.errors import ErrorEntry, ErrorLog
from core.store.tables import Tables
from devstack.azurite import connection_string
from devstack.processes import free_port
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import ServiceBusEmulator

MAP = f"adm{uuid.uuid4().hex[:8]}"  # rows of other tests in the same Azurite have other map names
NOW = datetime.now(UTC)


def change(event_id: str, key: str) -> ChangeEvent:
    return ChangeEvent(event_id=event_id, map=MAP, source="fno", entity="CustomersV3", operation="update",
                       company="USMF", keys={"dataAreaId": "usmf", "CustomerAccount": key},
                       values={"CreditLimit": "1234.5678901234"}, occurred_at=NOW)


@pytest.fixture(scope="module")
def queue(servicebus_emulator: ServiceBusEmulator) -> str:
    return servicebus_emulator.take("changes")


@pytest.fixture(scope="module")
def host(devhost: Callable[..., RunningHost], azurite: str, servicebus_emulator: ServiceBusEmulator,
         queue: str) -> RunningHost:
    return devhost("tests.integration.admin.app:app", TABLE_STORAGE_CONNECTION=azurite,
                   SERVICEBUS_CONNECTION=servicebus_emulator.connection_string, CHANGES_QUEUE=queue,
                   DEPLOY_ON_START="false")  # APP_URL="" is refused by Settings today: see the report


@pytest.fixture
async def http(host: RunningHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=host.url + "/api/manage/v1", timeout=60,
                                 headers={"x-functions-key": host.master_key}) as client:
        yield client


async def dead_letter(connection: str, queue: str, event: ChangeEvent, message_id: str, session_id: str) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage(event.to_json(), message_id=message_id,
                                                         session_id=session_id,
                                                         application_properties={"map": MAP}))
        async with client.get_queue_receiver(queue, session_id=session_id, max_wait_time=5) as receiver:
            (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.dead_letter_message(message, reason="ApplyFailed", error_description="gave up")


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in body["errors"]}


async def test_error_log_list_get_resubmit_discard(
    http: httpx.AsyncClient, azurite: str, servicebus_emulator: ServiceBusEmulator, queue: str
) -> None:
    connection = servicebus_emulator.connection_string
    recorded_id, orphan_id = f"evt-A|{MAP}", f"evt-B|{MAP}"
    session_a, session_b = f"{MAP}|USMF|A", f"{MAP}|USMF|B"
    text = "The target said: " + "no. " * 30_000  # 120 KB, kept whole
    tables = Tables(azurite)
    try:
        await ErrorLog(tables).record(ErrorEntry(
            id=recorded_id, map=MAP, key="USMF|A", source="fno", operation="update", category="application",
            text=text, attempts=5, change=change("evt-A", "A").to_json(), session_id=session_a,
            first_at=NOW, last_at=NOW, target_status=400, target_code="0x80040237"))
    finally:
        await tables.close()
    await dead_letter(connection, queue, change("evt-A", "A"), recorded_id, session_a)
    await dead_letter(connection, queue, change("evt-B", "B"), orphan_id, session_b)  # no error-log row

    listed = (await http.get("/errors", params={"map": MAP})).json()
    rows = by_id(listed)
    assert set(rows) == {recorded_id, orphan_id}
    assert rows[recorded_id]["category"] == "application" and rows[recorded_id]["text_length"] == len(text)
    assert rows[orphan_id]["category"] == "system" and "ApplyFailed" in rows[orphan_id]["text"]
    assert rows[orphan_id]["session_id"] == session_b
    only_system = by_id((await http.get("/errors", params={"map": MAP, "category": "system"})).json())
    assert set(only_system) == {orphan_id}

    one = await http.get(f"/errors/{quote(recorded_id, safe='')}")
    assert one.status_code == 200
    assert one.json()["text"] == text and one.json()["target_code"] == "0x80040237"

    resubmitted = await http.post(f"/errors/{quote(recorded_id, safe='')}/resubmit")
    assert resubmitted.status_code == 202, resubmitted.text
    new_id = resubmitted.json()["message_id"]
    assert new_id == f"{recorded_id}|resubmit-1"
    async with ServiceBusClient.from_connection_string(connection) as client, \
            client.get_queue_receiver(queue, session_id=session_a, max_wait_time=5) as receiver:
        (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
        assert (message.message_id, message.session_id) == (new_id, session_a)
        assert ChangeEvent.from_json(str(message)) == change("evt-A", "A")
        await receiver.complete_message(message)
    after = (await http.get(f"/errors/{quote(recorded_id, safe='')}")).json()
    assert after["status"] == "resubmitted"
    again = await http.post(f"/errors/{quote(recorded_id, safe='')}/resubmit")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    assert set(by_id((await http.get("/errors", params={"map": MAP})).json())) == {orphan_id}

    discarded = await http.post(f"/errors/{quote(orphan_id, safe='')}/discard")
    assert discarded.status_code == 200, discarded.text
    assert (await http.get(f"/errors/{quote(orphan_id, safe='')}")).json()["status"] == "discarded"
    assert (await http.post(f"/errors/{quote(orphan_id, safe='')}/discard")).status_code == 409
    assert (await http.get("/errors", params={"map": MAP})).json() == {"errors": []}
    everything = by_id((await http.get("/errors", params={"map": MAP, "status": "all"})).json())
    assert {k: v["status"] for k, v in everything.items()} == {recorded_id: "resubmitted", orphan_id: "discarded"}
    # Both dead-letters left the broker.
    async with ServiceBusClient.from_connection_string(connection) as client, \
            client.get_queue_receiver(queue, sub_queue="deadletter") as receiver:
        assert await receiver.peek_messages(max_message_count=10) == []


async def test_bulk_resubmit_and_discard_by_filter_and_by_ids(
    http: httpx.AsyncClient, azurite: str, servicebus_emulator: ServiceBusEmulator, queue: str
) -> None:
    bulk = f"{MAP}b"  # a map of its own: the other test's entries stay out of the filter
    tables = Tables(azurite)
    log = ErrorLog(tables)
    ids = [f"evt-{n}|{bulk}" for n in range(5)]
    try:
        for n, id in enumerate(ids):
            await log.record(ErrorEntry(
                id=id, map=bulk, key=f"USMF|K{n}", source="fno", operation="update",
                category="throttled" if n < 3 else "application", text="429", attempts=5,
                change=change(f"evt-{n}", f"K{n}").model_copy(update={"map": bulk}).to_json(),
                session_id=f"{bulk}|b{n}", first_at=NOW, last_at=NOW + timedelta(seconds=n)))
    finally:
        await tables.close()

    resubmitted = await http.post("/errors/resubmit", json={"map": bulk, "category": "throttled"})
    assert resubmitted.status_code == 202, resubmitted.text
    assert resubmitted.json()["resubmitted"] == 3 and set(resubmitted.json()["ids"]) == set(ids[:3])
    assert resubmitted.json()["failed"] == []
    async with ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as client:
        for n in range(3):
            async with client.get_queue_receiver(queue, session_id=f"{bulk}|b{n}", max_wait_time=5) as receiver:
                (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
                assert message.message_id == f"{ids[n]}|resubmit-1"
                await receiver.complete_message(message)

    # By ids: one already resubmitted is reported, not fatal; the open one is discarded.
    discarded = await http.post("/errors/discard", json={"ids": [ids[0], ids[3]]})
    assert discarded.status_code == 200, discarded.text
    assert discarded.json()["discarded"] == 1 and discarded.json()["ids"] == [ids[3]]
    assert [f["id"] for f in discarded.json()["failed"]] == [ids[0]]
    assert "resubmitted" in discarded.json()["failed"][0]["detail"]
    left = by_id((await http.get("/errors", params={"map": bulk})).json())
    assert set(left) == {ids[4]}

    for body, name in (({"category": "cosmic"}, "category"), ({"limit": 0}, "limit"), ({"colour": 1}, "colour")):
        refused = await http.post("/errors/discard", json=body)
        assert refused.status_code == 400 and refused.json()["invalid_params"][0]["name"] == name, refused.text
    assert set(by_id((await http.get("/errors", params={"map": bulk})).json())) == {ids[4]}  # nothing lost


async def test_unknown_ids_are_404(http: httpx.AsyncClient) -> None:
    missing = quote(f"nothing|{MAP}", safe="")
    assert (await http.get(f"/errors/{missing}")).status_code == 404
    assert (await http.post(f"/errors/{missing}/resubmit")).status_code == 404
    assert (await http.post(f"/errors/{missing}/discard")).status_code == 404


@pytest.mark.parametrize(("path", "params", "name"), [
    ("/errors", {"status": "closed"}, "status"),
    ("/errors", {"category": "cosmic"}, "category"),
    ("/errors", {"limit": "0"}, "limit"),
    ("/errors", {"limit": "many"}, "limit"),
    ("/activity", {"since": "yesterday"}, "since"),
    ("/activity", {"until": "2026-11-21T09:00:00"}, "until"),
    ("/activity", {"outcome": "exploded"}, "outcome"),
    ("/activity", {"since": "2026-01-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "since"),
    ("/activity", {"map": "a/b"}, "map"),
])
async def test_bad_parameters_are_400_naming_them(http: httpx.AsyncClient, path: str, params: dict[str, str],
                                                  name: str) -> None:
    response = await http.get(path, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["invalid_params"][0]["name"] == name


async def test_function_key_is_not_enough(host: RunningHost) -> None:
    async with httpx.AsyncClient(base_url=host.url + "/api/manage/v1", timeout=30) as client:
        for key in (host.function_key, None):
            headers = {"x-functions-key": key} if key else {}
            assert (await client.get("/errors", headers=headers)).status_code == 401
            assert (await client.get("/activity", headers=headers)).status_code == 401
            assert (await client.post("/errors/x/resubmit", headers=headers)).status_code == 401
        assert (await client.get("/errors", params={"code": host.master_key})).status_code == 200


async def test_activity_query(http: httpx.AsyncClient, azurite: str) -> None:
    # A day back: the window then holds only these entries, whatever else the shared Azurite logged just now
    # (the e2e suite records thousands), so the walk over every map is not cut short by the limit.
    base = (datetime.now(UTC) - timedelta(days=1)).replace(minute=30, second=0, microsecond=0)
    tables = Tables(azurite)
    try:
        await ActivityLog(tables).record([
            ActivityEntry(map=MAP, key=f"USMF|{i}", source="dataverse", operation="update", outcome="applied",
                          reason="written", at=base - timedelta(hours=i), latency_ms=10.0 + i)
            for i in range(4)
        ] + [ActivityEntry(map=MAP, key="USMF|1", source="fno", operation="update", outcome="skipped",
                           reason="echo", at=base - timedelta(hours=1, minutes=5))])
    finally:
        await tables.close()
    window = {"since": (base - timedelta(hours=2, minutes=1)).isoformat(), "until": base.isoformat()}
    rows = (await http.get("/activity", params={"map": MAP, **window})).json()["entries"]
    assert [(r["key"], r["outcome"]) for r in rows] == [("USMF|0", "applied"), ("USMF|1", "applied"),
                                                      ("USMF|1", "skipped"), ("USMF|2", "applied")]
    assert rows[0]["latency_ms"] == 10.0 and rows[0]["at"] == base.isoformat()
    keyed = (await http.get("/activity", params={"map": MAP, "key": "USMF|1", **window})).json()["entries"]
    assert [r["reason"] for r in keyed] == ["written", "echo"]
    skipped = (await http.get("/activity", params={"map": MAP, "outcome": "skipped", **window})).json()
    assert [r["key"] for r in skipped["entries"]] == ["USMF|1"]
    limited = (await http.get("/activity", params={"map": MAP, "limit": "1", **window})).json()["entries"]
    assert [r["key"] for r in limited] == ["USMF|0"]
    zulu = {"since": (base - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": base.strftime("%Y-%m-%dT%H:%M:%SZ")}
    all_maps = (await http.get("/activity", params=zulu)).json()["entries"]
    assert sum(r["map"] == MAP for r in all_maps) == 5


async def test_unreachable_table_storage_is_503_not_a_crash(
    devhost: Callable[..., RunningHost], servicebus_emulator: ServiceBusEmulator, queue: str
) -> None:
    dead_port = free_port()  # nothing listens there
    host = devhost("tests.integration.admin.app:app", TABLE_STORAGE_CONNECTION=connection_string(dead_port),
                   SERVICEBUS_CONNECTION=servicebus_emulator.connection_string, CHANGES_QUEUE=queue,
                   DEPLOY_ON_START="false")
    async with httpx.AsyncClient(base_url=host.url + "/api/manage/v1", timeout=60,
                                 headers={"x-functions-key": host.master_key}) as client:
        for response in (await client.get("/errors"), await client.get("/activity"),
                         await client.post("/errors/x/discard")):
            assert response.status_code == 503
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "Table Storage or Service Bus" in response.json()["detail"]
        assert (await client.get("/errors", params={"limit": "0"})).status_code == 400  # checked before any call


async def test_bad_settings_are_500_naming_the_setting(devhost: Callable[..., RunningHost], azurite: str) -> None:
    host = devhost("tests.integration.admin.app:app", TABLE_STORAGE_CONNECTION=azurite,
                   SERVICEBUS_CONNECTION="not a connection string", DEPLOY_ON_START="false")
    async with httpx.AsyncClient(base_url=host.url + "/api/manage/v1", timeout=60,
                                 headers={"x-functions-key": host.master_key}) as client:
        response = await client.get("/errors")
    assert response.status_code == 500
    assert response.json()["invalid_settings"] == ["SERVICEBUS_CONNECTION"]
    assert "not a connection string" not in response.text


def principal(*roles: str) -> str:
    """What App Service authentication passes for a signed-in caller with these app roles."""
    body = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
            "claims": [{"typ": "name", "val": "ops@contoso.example"}, *({"typ": "roles", "val": r} for r in roles)]}
    return base64.b64encode(json.dumps(body).encode()).decode()


async def test_app_roles_behind_app_service_authentication(http: httpx.AsyncClient) -> None:
    reader, operator, nobody = principal("DualWrite.Reader"), principal("DualWrite.Operator"), principal()
    missing = quote(f"nothing|{MAP}", safe="")
    assert (await http.get("/errors", headers={"x-ms-client-principal": reader})).status_code == 200
    refused = await http.post(f"/errors/{missing}/discard", headers={"x-ms-client-principal": reader})
    assert refused.status_code == 403 and "DualWrite.Operator" in refused.json()["detail"]
    assert refused.json()["roles"] == ["DualWrite.Reader"]
    assert (await http.post(f"/errors/{missing}/discard",
                            headers={"x-ms-client-principal": operator})).status_code == 404  # allowed, then not found
    assert (await http.get("/activity", headers={"x-ms-client-principal": nobody})).status_code == 403
    assert (await http.get("/errors", headers={"x-ms-client-principal": "not base64 json"})).status_code == 401
