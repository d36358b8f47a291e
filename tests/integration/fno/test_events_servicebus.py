"""Events delivered to a Service Bus queue of the project's emulator, sent with the real azure-servicebus SDK."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from azure.servicebus import ServiceBusClient

from tests.fixtures.servicebus import ServiceBusEmulator

pytestmark = pytest.mark.integration


def receive_all(connection_string: str, queue: str, expected: int) -> list[tuple[dict[str, object], object]]:
    got: list[tuple[dict[str, object], object]] = []
    with ServiceBusClient.from_connection_string(connection_string) as client, \
            client.get_queue_receiver(queue, max_wait_time=5) as receiver:
        for _ in range(10):
            batch = receiver.receive_messages(max_message_count=10, max_wait_time=2)
            for message in batch:
                got.append((json.loads(b"".join(message.body)), message))
                receiver.complete_message(message)
            if len(got) >= expected:
                break
    return got


def test_business_and_data_events_reach_a_queue(
    servicebus_emulator: ServiceBusEmulator, servicebus_queue: Callable[[str], str],
    odata: httpx.Client, admin: httpx.Client,
) -> None:
    queue = servicebus_queue("plain")
    created = admin.post("endpoints", json={"name": "sb", "type": "servicebus", "queue": queue,
                                            "connectionString": servicebus_emulator.connection_string})
    assert created.status_code == 201, created.text
    assert "***" in created.json()["connectionString"]
    for event_id in ("DWCustomerChangedBusinessEvent", "CustomersV3.Create"):
        resp = admin.post("activations", json={"eventId": event_id, "legalEntity": "demf", "endpoint": "sb"})
        assert resp.status_code == 201, resp.text
    body = {"dataAreaId": "demf", "CustomerAccount": "SB-001", "OrganizationName": "Queue GmbH",
            "CustomerGroupId": "10", "SalesCurrencyCode": "EUR", "CreditLimit": 1.5}
    assert odata.post("CustomersV3", json=body).status_code == 201
    assert admin.post("drain").status_code == 200
    assert not [e for e in admin.get("errors").json() if e["endpoint"] == "sb"]
    messages = receive_all(servicebus_emulator.connection_string, queue, expected=4)
    tests = [m for m in messages if m[0].get("ControlNumber") == 0]
    assert len(tests) == 2  # one test message per activation
    business = [m for m in messages if m[0].get("CustomerAccount") == "SB-001"]
    assert len(business) == 1
    payload, message = business[0]
    assert payload["BusinessEventId"] == "DWCustomerChangedBusinessEvent"
    assert payload["BusinessEventLegalEntity"] == "DEMF" and payload["ChangeType"] == "Create"
    assert str(message.message_id) == payload["EventId"]
    assert message.content_type == "application/json"
    props = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
             for k, v in (message.application_properties or {}).items()}
    assert props["BusinessEventId"] == "DWCustomerChangedBusinessEvent" and props["LegalEntity"] == "DEMF"
    data = [m for m in messages if m[0].get("MessageName") == "Create"]
    assert len(data) == 1
    target = {a["key"]: a["value"] for a in data[0][0]["InputParameters"][0]["value"]["Attributes"]}
    assert target["mserp_customeraccount"] == "SB-001" and target["mserp_creditlimit"] == 1.5
