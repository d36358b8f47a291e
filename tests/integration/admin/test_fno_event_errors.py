"""F&O events from the fno-events queue that cannot be ingested, in the error log: recorded at once by the
trigger (no retries burnt on bad data), the queue's own dead-letters listed beside them, resubmitted by
running the ingest again on the raw body, discarded like any other error.

Two local hosts on Azurite and the Service Bus emulator: one serving the ingest and admin blueprints (the
trigger consumes its fno-events queue), one serving admin alone over an fno-events queue nobody consumes,
so the test can dead-letter a message there itself.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from core.events.model import ChangeEvent
from core.store.errors import ErrorEntry, ErrorLog
from core.store.tables import Tables
from core.sync.ingest import DEFAULT_BUCKETS, bucket_of
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import ServiceBusEmulator

PAYLOADS = Path(__file__).parents[2] / "unit" / "events" / "payloads"
UNUSED_URL = "http://127.0.0.1:9"  # neither ingest nor the admin error routes call Dataverse or F&O
MALFORMED = b'{"MessageName": "Merge", "note": "from a misconfigured F&O endpoint"}'
US_900_SESSION = f"customers|b{bucket_of('customers', ('US-900',), DEFAULT_BUCKETS)}"


class Queues:
    def __init__(self, emulator: ServiceBusEmulator) -> None:
        self.connection = emulator.connection_string
        self.changes = emulator.take("changes")
        self.fno_events = emulator.take("plain")  # consumed by the trigger of the ingest host
        self.idle_fno_events = emulator.take("plain")  # consumed by nobody: the admin-only host's


@pytest.fixture(scope="module")
def queues(servicebus_emulator: ServiceBusEmulator) -> Queues:
    return Queues(servicebus_emulator)


def _settings(azurite: str, queues: Queues, fno_events: str) -> dict[str, str]:
    return {"TABLE_STORAGE_CONNECTION": azurite, "SERVICEBUS_CONNECTION": queues.connection,
            "CHANGES_QUEUE": queues.changes, "FNO_EVENTS_QUEUE": fno_events, "DATAVERSE_URL": UNUSED_URL,
            "FNO_URL": UNUSED_URL, "DEPLOY_ON_START": "false"}


@pytest.fixture(scope="module")
def ingest_host(devhost: Callable[..., RunningHost], azurite: str, queues: Queues) -> RunningHost:
    return devhost("tests.integration.admin.ingest_admin_app:app", **_settings(azurite, queues, queues.fno_events))


@pytest.fixture(scope="module")
def admin_host(devhost: Callable[..., RunningHost], azurite: str, queues: Queues) -> RunningHost:
    return devhost("tests.integration.admin.app:app", **_settings(azurite, queues, queues.idle_fno_events))


def _client(host: RunningHost) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=host.url + "/api/manage/v1", timeout=60,
                             headers={"x-functions-key": host.master_key})


@pytest.fixture
async def ingest_admin(ingest_host: RunningHost) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(ingest_host) as client:
        yield client


@pytest.fixture
async def admin(admin_host: RunningHost) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(admin_host) as client:
        yield client


def path(id: str, action: str = "") -> str:
    return f"/errors/{quote(id, safe='')}" + (f"/{action}" if action else "")


async def listed(http: httpx.AsyncClient, **params: str) -> dict[str, dict[str, Any]]:
    response = await http.get("/errors", params=params)
    assert response.status_code == 200, response.text
    return {e["id"]: e for e in response.json()["errors"]}


async def wait_listed(http: httpx.AsyncClient, id: str, wait: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if (entry := (await listed(http, map="unknown")).get(id)) is not None:
            return entry
        await asyncio.sleep(0.5)
    raise AssertionError(f"{id} never showed in the error log")


async def peek(connection: str, queue: str, sub_queue: ServiceBusSubQueue | None = None) -> list[Any]:
    async with ServiceBusClient.from_connection_string(connection) as client, \
            client.get_queue_receiver(queue, sub_queue=sub_queue) as receiver:
        return list(await receiver.peek_messages(max_message_count=10))


def business_event(event_id: str) -> bytes:
    data = json.loads((PAYLOADS / "fno_business_create.json").read_bytes())
    data["EventId"] = event_id
    return json.dumps(data).encode()


async def test_malformed_fno_event_is_recorded_once_and_cannot_be_resubmitted_as_is(
    ingest_admin: httpx.AsyncClient, queues: Queues
) -> None:
    message_id = f"bad-{uuid.uuid4().hex}"
    async with ServiceBusClient.from_connection_string(queues.connection) as client, \
            client.get_queue_sender(queues.fno_events) as sender:
        await sender.send_messages(ServiceBusMessage(MALFORMED, message_id=message_id))
    id = f"fno-events:{message_id}"

    row = await wait_listed(ingest_admin, id)
    assert (row["category"], row["source"], row["operation"], row["map"], row["status"]) == (
        "application", "fno", "ingest", "unknown", "open")
    assert row["text"].startswith("MessageName:") and "Merge" in row["text"]
    assert row["attempts"] == 1  # recorded on its first delivery, not after the broker gave up
    detail = (await ingest_admin.get(path(id))).json()
    assert detail["change"] == MALFORMED.decode()
    # Completed: neither waiting for another delivery nor dead-lettered (which would list it a second time).
    assert await peek(queues.connection, queues.fno_events) == []
    assert await peek(queues.connection, queues.fno_events, ServiceBusSubQueue.DEAD_LETTER) == []
    assert [k for k in await listed(ingest_admin, map="unknown") if message_id in k] == [id]

    refused = await ingest_admin.post(path(id, "resubmit"))
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["field"] == "MessageName" and "Merge" in refused.json()["detail"]
    assert (await ingest_admin.get(path(id))).json()["status"] == "open"

    assert (await ingest_admin.post(path(id, "discard"))).status_code == 200
    assert id not in await listed(ingest_admin, map="unknown")


async def test_refused_fno_event_that_parses_now_resubmits_into_the_changes_queue(
    ingest_admin: httpx.AsyncClient, queues: Queues, azurite: str
) -> None:
    event_id = str(uuid.uuid4()).upper()
    body = business_event(event_id)
    id = f"fno-events:{event_id}"
    now = datetime.now(UTC)
    tables = Tables(azurite)
    try:  # as if an earlier parser had refused it
        await ErrorLog(tables).record(ErrorEntry(
            id=id, map="unknown", key="", source="fno", operation="ingest", category="application",
            text="BusinessEventId: not known", attempts=1, change=body.decode(), session_id="", first_at=now,
            last_at=now))
    finally:
        await tables.close()

    resubmitted = await ingest_admin.post(path(id, "resubmit"))
    assert resubmitted.status_code == 202, resubmitted.text
    assert resubmitted.json() == {"id": id, "status": "resubmitted", "message_id": None, "accepted": 1}
    session = US_900_SESSION
    async with ServiceBusClient.from_connection_string(queues.connection) as client, \
            client.get_queue_receiver(queues.changes, session_id=session, max_wait_time=10) as receiver:
        (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
        await receiver.complete_message(message)
    assert message.message_id == f"fno:{event_id}|customers"
    event = ChangeEvent.from_json(str(message))
    assert (event.source, event.operation, event.map) == ("fno", "refetch", "customers")  # a business event
    assert event.keys == {"CustomerAccount": "US-900", "dataAreaId": "usmf"}
    assert (await ingest_admin.get(path(id))).json()["status"] == "resubmitted"
    assert (await ingest_admin.post(path(id, "resubmit"))).status_code == 409


async def dead_letter(queues: Queues, body: bytes, message_id: str) -> None:
    """An fno-events message the broker gave up on (as after every delivery failed to reach the changes queue)."""
    async with ServiceBusClient.from_connection_string(queues.connection) as client:
        async with client.get_queue_sender(queues.idle_fno_events) as sender:
            await sender.send_messages(ServiceBusMessage(body, message_id=message_id))
        async with client.get_queue_receiver(queues.idle_fno_events, max_wait_time=5) as receiver:
            (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.dead_letter_message(message, reason="MaxDeliveryCountExceeded",
                                               error_description="the changes queue was unreachable")


async def test_fno_events_dead_letters_are_listed_and_can_be_discarded_or_resubmitted(
    admin: httpx.AsyncClient, queues: Queues
) -> None:
    discard_id, resubmit_event = f"dl-{uuid.uuid4().hex}", str(uuid.uuid4()).upper()
    body = business_event(str(uuid.uuid4()))
    await dead_letter(queues, body, discard_id)
    await dead_letter(queues, business_event(resubmit_event), resubmit_event)
    id, other = f"fno-events:{discard_id}", f"fno-events:{resubmit_event}"

    rows = await listed(admin, map="unknown", category="system")
    assert {id, other} <= set(rows)
    row = rows[id]
    assert (row["category"], row["source"], row["operation"], row["map"]) == ("system", "fno", "ingest", "unknown")
    assert row["text"] == "MaxDeliveryCountExceeded: the changes queue was unreachable"
    assert (await admin.get(path(id))).json()["change"] == body.decode()
    assert id not in await listed(admin, map="unknown", category="application")

    discarded = await admin.post(path(id, "discard"))
    assert discarded.status_code == 200, discarded.text
    assert (await admin.get(path(id))).json()["status"] == "discarded"
    assert id not in await listed(admin, map="unknown")
    assert (await admin.post(path(id, "discard"))).status_code == 409

    resubmitted = await admin.post(path(other, "resubmit"))
    assert resubmitted.status_code == 202, resubmitted.text
    assert resubmitted.json()["accepted"] == 1
    async with ServiceBusClient.from_connection_string(queues.connection) as client, \
            client.get_queue_receiver(queues.changes, session_id=US_900_SESSION,
                                      max_wait_time=10) as receiver:
        (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=10)
        await receiver.complete_message(message)
    assert message.message_id == f"fno:{resubmit_event}|customers"
    assert (await admin.get(path(other))).json()["status"] == "resubmitted"
    # Both dead-letters left the broker.
    assert await peek(queues.connection, queues.idle_fno_events, ServiceBusSubQueue.DEAD_LETTER) == []
