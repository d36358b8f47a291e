"""The ingest functions through the local Functions host, with the changes queue on the project's
Service Bus emulator, read back with the real SDK.

The host serves the ingest blueprint alone (`ingest_app.py`); one host for the module, with its own
`changes`-kind queue and `plain` fno-events queue. Every test leaves the changes queue empty, so
"nothing enqueued" is checked by finding no session with messages.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import OperationTimeoutError

from core.events.model import ChangeEvent
from core.store.activity import ActivityLog
from core.store.errors import ErrorLog
from core.store.tables import Tables
from core.sync.ingest import DEFAULT_BUCKETS, bucket_of
from devstack.azurite import connection_string
from devstack.processes import free_port
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import ServiceBusEmulator

PAYLOADS = Path(__file__).parents[2] / "unit" / "events" / "payloads"
ROOT = Path(__file__).parents[3]
ACCOUNT = "acf5b83d-06a1-4ef3-b78f-c2eca283e6ad"
UNUSED_URL = "http://127.0.0.1:9"  # ingest never calls Dataverse or F&O
# function_app.py minus apply (which would consume the changes queue these tests read back)
INGEST_APP = "tests.integration.ingest.ingest_app:app"


class Stack:
    def __init__(self, host: RunningHost, emulator: ServiceBusEmulator, changes: str, fno_events: str) -> None:
        self.host = host
        self.changes = changes
        self.fno_events = fno_events
        self.bus = ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0)

    def post(self, route: str, body: bytes, *, key: str | None = "function", headers: dict[str, str] | None = None,
             query_key: bool = False) -> httpx.Response:
        sent = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        params = {}
        if key is not None:
            value = self.host.function_key if key == "function" else key
            if query_key:
                params["code"] = value
            else:
                sent["x-functions-key"] = value
        return httpx.post(f"{self.host.url}/api/{route}", content=body, headers=sent, params=params, timeout=60)

    def drain(self, expected: int, wait: float = 10.0) -> list[Any]:
        """Receive and complete messages from every session until `expected` arrived (or `wait` ran out)."""
        got: list[Any] = []
        deadline = time.monotonic() + wait
        while len(got) < expected and time.monotonic() < deadline:
            got += self._one_session(max_wait=1)
        return got

    def assert_empty(self) -> None:
        assert self._one_session(max_wait=1) == [], "something was enqueued"

    def _one_session(self, max_wait: float) -> list[Any]:
        try:
            with self.bus.get_queue_receiver(self.changes, session_id=NEXT_AVAILABLE_SESSION,
                                             max_wait_time=max_wait) as receiver:
                messages = receiver.receive_messages(max_message_count=50, max_wait_time=max_wait)
                for message in messages:
                    receiver.complete_message(message)
                return list(messages)
        except OperationTimeoutError:  # no session has messages
            return []


@pytest.fixture(scope="module")
def stack(devhost: Any, servicebus_emulator: ServiceBusEmulator, azurite: str) -> Iterator[Stack]:
    changes, fno_events = servicebus_emulator.take("changes"), servicebus_emulator.take("plain")
    host = devhost(INGEST_APP, SERVICEBUS_CONNECTION=servicebus_emulator.connection_string,
                   TABLE_STORAGE_CONNECTION=azurite, CHANGES_QUEUE=changes, FNO_EVENTS_QUEUE=fno_events,
                   DATAVERSE_URL=UNUSED_URL, FNO_URL=UNUSED_URL, DEPLOY_ON_START="false")
    built = Stack(host, servicebus_emulator, changes, fno_events)
    try:
        yield built
    finally:
        built.bus.close()


def payload(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def edited(name: str, change: Any) -> bytes:
    data = json.loads(payload(name))
    change(data)
    return json.dumps(data).encode()


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return body


# -- accepted payloads ----------------------------------------------------------------------------------------


def test_webhook_body_becomes_one_message_per_map(stack: Stack) -> None:
    response = stack.post("dataverse/webhook", payload("ref_1_7_1_update"), query_key=True)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "skipped": []}
    [message] = stack.drain(1)
    assert message.message_id == "dv:4af10637-4ea2-e711-8122-000d3aa2331c|customers"
    assert message.session_id == f"customers|b{bucket_of('customers', ('US-001',), DEFAULT_BUCKETS)}"
    event = ChangeEvent.from_json(b"".join(message.body))
    assert event.map == "customers" and event.operation == "update" and event.record_id == ACCOUNT
    assert event.values["creditlimit"] == "25000.0" and event.pre is not None
    stack.assert_empty()


def test_captured_money_with_ten_decimals_arrives_exact(stack: Stack) -> None:
    headers = json.loads((PAYLOADS / "dv_account_update.headers.json").read_text())
    response = stack.post("dataverse/webhook", payload("dv_account_update"), headers=headers)
    assert response.status_code == 202, response.text
    [message] = stack.drain(1)
    assert ChangeEvent.from_json(b"".join(message.body)).values["creditlimit"] == "99999.0000000001"


async def test_unmapped_table_is_accepted_reported_and_logged(stack: Stack, azurite: str) -> None:
    body = edited("ref_1_7_1_update", lambda d: d.update(PrimaryEntityName="lead"))
    response = stack.post("dataverse/webhook", body)
    assert response.status_code == 202
    event_id = "dv:4af10637-4ea2-e711-8122-000d3aa2331c"
    assert response.json() == {"accepted": 0, "skipped": [
        {"entity": "lead", "reason": "no enabled map covers lead", "event_id": event_id}]}
    stack.assert_empty()
    tables = Tables(azurite)
    try:
        entries = await ActivityLog(tables).query(map="unmapped", key="lead")
    finally:
        await tables.close()
    assert [(e.outcome, e.source, e.event_id, e.reason) for e in entries] == [
        ("skipped", "dataverse", event_id, "no enabled map covers lead")]


def test_fno_events_over_https(stack: Stack) -> None:
    items = json.loads(payload("fno_data_update")), json.loads(payload("fno_business_create"))
    response = stack.post("fno/events", json.dumps(list(items)).encode())
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 2
    messages = stack.drain(2)
    assert {m.session_id for m in messages} == {f"customers|b{bucket_of('customers', ('US-900',), DEFAULT_BUCKETS)}"}
    assert {ChangeEvent.from_json(b"".join(m.body)).source for m in messages} == {"fno"}


def test_fno_activation_test_message_with_any_content_type(stack: Stack) -> None:
    response = stack.post("fno/events", payload("fno_test_message"), headers={"Content-Type": "text/plain"})
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "skipped": [], "test_message": True}
    stack.assert_empty()


def test_fno_event_from_the_fno_events_queue_reaches_the_changes_queue(stack: Stack) -> None:
    source = json.loads(payload("fno_business_delete"))
    with stack.bus.get_queue_sender(stack.fno_events) as sender:
        sender.send_messages(ServiceBusMessage(json.dumps(source), content_type="application/json",
                                               message_id=source["EventId"]))
    [message] = stack.drain(1, wait=30)
    assert message.message_id == f"fno:{source['EventId']}|customers"
    event = ChangeEvent.from_json(b"".join(message.body))
    assert event.operation == "delete" and event.keys == {"CustomerAccount": "US-900", "dataAreaId": "usmf"}


async def test_unparseable_fno_events_message_is_recorded_in_the_error_log_not_retried(
    stack: Stack, azurite: str
) -> None:
    message_id = f"bad-{uuid.uuid4().hex}"
    with stack.bus.get_queue_sender(stack.fno_events) as sender:
        sender.send_messages(ServiceBusMessage(b'{"MessageName": "Merge"}', message_id=message_id))
    tables = Tables(azurite)
    try:
        errors, entry = ErrorLog(tables), None
        deadline = time.monotonic() + 60
        while entry is None and time.monotonic() < deadline:
            entry = await errors.get(f"fno-events:{message_id}")
            await asyncio.sleep(0.2)
    finally:
        await tables.close()
    assert entry is not None, "the refused event was not recorded"
    assert (entry.category, entry.source, entry.operation, entry.map, entry.attempts) == (
        "application", "fno", "ingest", "unknown", 1)
    assert entry.text.startswith("MessageName:") and entry.change == '{"MessageName": "Merge"}'
    # Completed on its first delivery: nothing left to retry, nothing dead-lettered.
    with stack.bus.get_queue_receiver(stack.fno_events) as receiver:
        assert receiver.peek_messages(max_message_count=5) == []
    with stack.bus.get_queue_receiver(stack.fno_events, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        assert receiver.peek_messages(max_message_count=5) == []
    stack.assert_empty()


def test_fno_event_reaches_each_map_of_its_entity_read_by_its_own_key(
    devhost: Any, servicebus_emulator: ServiceBusEmulator, azurite: str, tmp_path: Path
) -> None:
    """Two enabled maps on CustomersV3 with different F&O keys (customer-persons keyed by the last name here): each
    gets its own message keyed by its own fields; a redelivery is dropped by the queue; an event without the
    second map's key still reaches the first, the second named in the answer's skips."""
    for source in (ROOT / "maps").glob("*.json"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    persons = json.loads((tmp_path / "customer-persons.json").read_text())
    persons["enabled"] = True
    persons["fno"]["key"] = ["dataAreaId", "PersonLastName"]
    persons["dataverse"]["key"] = ["msdyn_company.cdm_companycode", "lastname"]
    (tmp_path / "customer-persons.json").write_text(json.dumps(persons))
    changes, fno_events = servicebus_emulator.take("changes"), servicebus_emulator.take("plain")
    host = devhost(INGEST_APP, SERVICEBUS_CONNECTION=servicebus_emulator.connection_string,
                   TABLE_STORAGE_CONNECTION=azurite, CHANGES_QUEUE=changes, FNO_EVENTS_QUEUE=fno_events,
                   DATAVERSE_URL=UNUSED_URL, FNO_URL=UNUSED_URL, DEPLOY_ON_START="false", MAPS_PATH=str(tmp_path))
    two = Stack(host, servicebus_emulator, changes, fno_events)

    def named(data: Any) -> None:
        for attribute in data["InputParameters"][0]["value"]["Attributes"]:
            if attribute["key"] == "mserp_personlastname":
                attribute["value"] = "Capture"

    try:
        body = edited("fno_data_create", named)
        response = two.post("fno/events", body)
        assert response.status_code == 202 and response.json() == {"accepted": 2, "skipped": []}, response.text
        messages = two.drain(2)
        operation = json.loads(body)["OperationId"]
        by_map = {(e := ChangeEvent.from_json(b"".join(m.body))).map: (m.message_id, e.keys) for m in messages}
        assert by_map == {
            "customers": (f"fno:{operation}|customers", {"dataAreaId": "usmf", "CustomerAccount": "US-900"}),
            "customer-persons": (f"fno:{operation}|customer-persons",
                                 {"dataAreaId": "usmf", "PersonLastName": "Capture"}),
        }
        assert two.post("fno/events", body).status_code == 202  # F&O delivering it again
        two.assert_empty()  # both copies dropped by the queue's duplicate detection

        response = two.post("fno/events", payload("fno_data_update"))  # no last name: customer-persons cannot key it
        assert response.status_code == 202 and response.json()["accepted"] == 1, response.text
        [skipped] = response.json()["skipped"]
        assert "map 'customer-persons'" in skipped["reason"] and "mserp_personlastname" in skipped["reason"]
        [message] = two.drain(1)
        assert ChangeEvent.from_json(b"".join(message.body)).map == "customers"
        two.assert_empty()
    finally:
        two.bus.close()


# -- rejected payloads: the right 4xx, a problem naming the field, nothing queued ----------------------------


DATAVERSE_BAD = [
    (b"{not json", "body"),
    (b"", "body"),
    (None, "InputParameters"),  # InputParameters an object
    ("attributes-string", "InputParameters[0].value.Attributes"),
    ("bad-guid", "PrimaryEntityId"),
    ("no-target", "InputParameters"),
    ("unknown-message", "MessageName"),
]


def _dataverse_bad(kind: Any) -> bytes:
    if isinstance(kind, bytes):
        return kind
    changes = {
        None: lambda d: d.update(InputParameters={"Target": {}}),
        "attributes-string": lambda d: d["InputParameters"][0]["value"].update(Attributes="name=x"),
        "bad-guid": lambda d: d.update(PrimaryEntityId="12345"),
        "no-target": lambda d: d.update(InputParameters=[]),
        "unknown-message": lambda d: d.update(MessageName="Merge"),
    }
    return edited("ref_1_7_1_update", changes[kind])


@pytest.mark.parametrize(("kind", "field"), DATAVERSE_BAD)
def test_dataverse_bad_input(stack: Stack, kind: Any, field: str) -> None:
    body = problem_of(stack.post("dataverse/webhook", _dataverse_bad(kind)), 400)
    assert body["field"] == field
    stack.assert_empty()


FNO_BAD = [
    (b"[{]", "body"),
    (b"", "body"),
    (b"\"text\"", "$"),
    ("attributes-string", "InputParameters[0].value.Attributes"),
    ("no-target", "InputParameters"),
    ("unknown-message", "MessageName"),
    ("second-item-broken", "[1].MessageName"),
]


def _fno_bad(kind: Any) -> bytes:
    if isinstance(kind, bytes):
        return kind
    if kind == "second-item-broken":  # a good first event must not be queued either
        return json.dumps([json.loads(payload("fno_data_update")), {"PrimaryEntityName": "x"}]).encode()
    changes = {
        "attributes-string": lambda d: d["InputParameters"][0]["value"].update(Attributes="x"),
        "no-target": lambda d: d.update(InputParameters=[]),
        "unknown-message": lambda d: d.update(MessageName="Merge"),
    }
    return edited("fno_data_update", changes[kind])


@pytest.mark.parametrize(("kind", "field"), FNO_BAD)
def test_fno_bad_input(stack: Stack, kind: Any, field: str) -> None:
    body = problem_of(stack.post("fno/events", _fno_bad(kind)), 400)
    assert body["field"] == field
    stack.assert_empty()


@pytest.mark.parametrize("route", ["dataverse/webhook", "fno/events"])
def test_oversized_body(stack: Stack, route: str) -> None:
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert problem_of(stack.post(route, body), 413)["field"] == "body"
    stack.assert_empty()


@pytest.mark.parametrize("route", ["dataverse/webhook", "fno/events"])
@pytest.mark.parametrize("key", ["wrong-key", None])
def test_missing_or_wrong_key(stack: Stack, route: str, key: str | None) -> None:
    good = payload("ref_1_7_1_update") if route.startswith("dataverse") else payload("fno_data_update")
    assert stack.post(route, good, key=key).status_code == 401
    assert stack.post(route, good, key=key, query_key=True).status_code == 401
    stack.assert_empty()


def test_unreachable_queue_answers_503(devhost: Any, azurite: str) -> None:
    dead = f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"
    host = devhost(INGEST_APP, SERVICEBUS_CONNECTION=dead, TABLE_STORAGE_CONNECTION=azurite,
                   DATAVERSE_URL=UNUSED_URL, FNO_URL=UNUSED_URL, DEPLOY_ON_START="false")
    response = httpx.post(f"{host.url}/api/dataverse/webhook", content=payload("ref_1_7_1_update"),
                          headers={"x-functions-key": host.function_key}, timeout=120)
    assert problem_of(response, 503)["title"] == "Queue unavailable"


def test_unreachable_table_storage_on_a_cold_instance_answers_503(devhost: Any,
                                                                  servicebus_emulator: ServiceBusEmulator) -> None:
    # A new instance reads the stored map revisions before it can route anything: without them it could miss a
    # map added through the API and drop its changes. So it answers 503, and the sender sends again.
    host = devhost(INGEST_APP, SERVICEBUS_CONNECTION=servicebus_emulator.connection_string,
                   TABLE_STORAGE_CONNECTION=connection_string(free_port()), DATAVERSE_URL=UNUSED_URL,
                   FNO_URL=UNUSED_URL, DEPLOY_ON_START="false")
    for route, body in (("dataverse/webhook", payload("ref_1_7_1_update")), ("fno/events", payload("fno_data_update"))):
        response = httpx.post(f"{host.url}/api/{route}", content=body, headers={"x-functions-key": host.function_key},
                              timeout=120)
        assert problem_of(response, 503)["title"] == "Dependency unavailable", route
