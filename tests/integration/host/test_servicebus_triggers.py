"""Service Bus triggers through the local host against the emulator, observed only through the
broker with the real SDK: each test function reports what it received to a report queue.

The emulator here has its own topology with 5 s locks, the shortest real Service Bus allows: the
SDK's lock renewer cannot keep a shorter lock alive (it checks once a second)."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from devstack.servicebus.launch import connection_string, emulator_process
from tests.fixtures.devhost import RunningHost

HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "serviceBus": {
            "maxConcurrentCalls": 4,
            "maxConcurrentSessions": 2,
            "maxMessageBatchSize": 50,
            "autoCompleteMessages": True,
            "maxAutoLockRenewalDuration": "00:01:00",
            "sessionIdleTimeout": "00:00:02",
        }
    },
}


TOPOLOGY = Path(__file__).with_name("servicebus-topology.json")
QUEUES = {"SINGLE_QUEUE": "single", "BATCH_QUEUE": "batch", "SESSION_QUEUE": "sessions", "BUCKET_QUEUE": "buckets",
          "REPORT_QUEUE": "report"}


@pytest.fixture(scope="module")
def emulator():
    process = emulator_process(config=TOPOLOGY, name="servicebus-host-tests").start()
    yield connection_string(process.port)
    process.stop()


@pytest.fixture(scope="module")
def host_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("sbhost") / "host.json"
    path.write_text(json.dumps(HOST_JSON))
    return path


@pytest.fixture(scope="module")
def host(devhost, emulator, host_json) -> RunningHost:
    return devhost("tests.apps.servicebus_app:app", host_json=host_json, SERVICEBUS_CONNECTION=emulator, **QUEUES)


@pytest.fixture(scope="module")
def bus(emulator):
    with ServiceBusClient.from_connection_string(emulator) as client:
        yield client


def _reports(bus: ServiceBusClient, queue: str, count: int, limit_s: float = 30.0) -> list[dict]:
    """Receive-and-complete `count` reports (or fail after `limit_s`)."""
    found: list[dict] = []
    deadline = time.monotonic() + limit_s
    with bus.get_queue_receiver(queue) as receiver:
        while len(found) < count and time.monotonic() < deadline:
            for message in receiver.receive_messages(max_message_count=count - len(found), max_wait_time=1):
                found.append(json.loads(b"".join(message.body)))
                receiver.complete_message(message)
    assert len(found) == count, f"expected {count} reports, got {found}"
    return found


def test_a_message_reaches_the_function_with_its_properties_and_is_completed(host, bus) -> None:
    message_id = str(uuid.uuid4())
    with bus.get_queue_sender("single") as sender:
        sender.send_messages(ServiceBusMessage(
            "hello", message_id=message_id, content_type="text/plain", application_properties={"map": "customers"},
        ))
    [report] = _reports(bus, "report", 1)
    assert report["function"] == "single" and report["body"] == "hello"
    assert report["message_id"] == message_id and report["content_type"] == "text/plain"
    assert report["application_properties"] == {"map": "customers"}
    assert report["enqueued"] is not None and report["sequence_number"] is not None
    assert report["attempts"] == 1
    with bus.get_queue_receiver("single") as receiver:  # completed, so gone
        assert receiver.peek_messages(max_message_count=5) == []


def test_an_exception_abandons_the_message_and_it_is_redelivered(host, bus) -> None:
    with bus.get_queue_sender("single") as sender:
        sender.send_messages(ServiceBusMessage("plain"))
        sender.send_messages(ServiceBusMessage("fail-times:1"))
    reports = {r["body"]: r for r in _reports(bus, "report", 2)}
    assert reports["fail-times:1"]["attempts"] == 2
    # Abandon counts as a failed delivery: one more than a message delivered the first time.
    assert reports["fail-times:1"]["delivery_count"] == reports["plain"]["delivery_count"] + 1
    assert "RuntimeError: deliberate failure on attempt 1" in host.log()


def test_cardinality_many_gets_batches(host, bus) -> None:
    bodies = [f"b{i}" for i in range(20)]
    with bus.get_queue_sender("batch") as sender:
        batch = sender.create_message_batch()
        for body in bodies:
            batch.add_message(ServiceBusMessage(body))
        sender.send_messages(batch)
    received: list[str] = []
    invocations = 0
    deadline = time.monotonic() + 30
    while len(received) < len(bodies) and time.monotonic() < deadline:
        for report in _reports(bus, "report", 1):
            assert report["function"] == "many"
            received += report["bodies"]
            invocations += 1
    assert sorted(received) == sorted(bodies)
    assert invocations < len(bodies)  # at least one invocation got several messages


def test_session_messages_arrive_in_order_per_session(host, bus) -> None:
    sessions = [f"customers|US-{i:03d}" for i in range(3)]
    with bus.get_queue_sender("sessions") as sender:
        for n in range(5):
            sender.send_messages([ServiceBusMessage(f"{s}#{n}", session_id=s) for s in sessions])
    reports = _reports(bus, "report", 15)
    for session in sessions:
        mine = [r for r in reports if r["session_id"] == session]
        assert [r["body"] for r in sorted(mine, key=lambda r: r["sequence_number"])] == [
            f"{session}#{n}" for n in range(5)
        ]
        # Within a session, invocations happen one at a time in order: the report order is the same.
        assert [r["body"] for r in mine] == [f"{session}#{n}" for n in range(5)]


def test_batched_session_trigger_takes_one_session_at_a_time_in_order(host, bus) -> None:
    sessions = [f"customers|b{i}" for i in range(3)]
    with bus.get_queue_sender("buckets") as sender:
        for n in range(10):
            sender.send_messages([ServiceBusMessage(f"{s}#{n}", session_id=s) for s in sessions])
    reports: list[dict] = []
    deadline = time.monotonic() + 60
    while sum(len(r["bodies"]) for r in reports) < 30 and time.monotonic() < deadline:
        reports += _reports(bus, "report", 1, limit_s=60)
    by_session: dict[str, list[str]] = {}
    for report in reports:
        [session] = report["sessions"]  # every batch holds messages of one session only
        by_session.setdefault(session, []).extend(report["bodies"])
    assert by_session == {s: [f"{s}#{n}" for n in range(10)] for s in sessions}  # in order, all of them
    assert any(len(r["bodies"]) > 1 for r in reports)  # batches, not one message each
    spans = sorted((r["started"], r["ended"]) for r in reports)
    # as in Azure, one session at a time (maxConcurrentSessions is 2 here): invocations never overlap
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_a_batched_session_trigger_works_a_session_granted_to_any_of_its_waiting_asks(host, bus) -> None:
    """The trigger keeps asks for the next sessions open while idle; a session granted to any of them is worked
    at once. (It used to be worked only once the asks made before it had their own session or gave up, after
    up to a minute: changes of an idle host's new session then waited that long.)"""
    for n in range(5):  # one new session at a time, on an idle host: each lands on whichever ask the broker picks
        session = f"customers|idle-{uuid.uuid4().hex[:6]}"
        with bus.get_queue_sender("buckets") as sender:
            sender.send_messages(ServiceBusMessage(f"{session}#{n}", session_id=session))
        [report] = _reports(bus, "report", 1, limit_s=20)  # a stalled session would take up to 60 s
        assert report["sessions"] == [session] and report["bodies"] == [f"{session}#{n}"]
        time.sleep(2.5)  # past sessionIdleTimeout: the host lets the session go and is idle again


def test_sigterm_lets_the_invocation_in_flight_finish_and_settle(devhost, emulator, bus, host_json) -> None:
    queue, report_queue = "slow", "slow-report"
    host = devhost(
        "tests.apps.servicebus_app:app", host_json=host_json, SERVICEBUS_CONNECTION=emulator,
        **{**QUEUES, "SINGLE_QUEUE": queue, "REPORT_QUEUE": report_queue},
    )
    message_id = str(uuid.uuid4())
    with bus.get_queue_sender(queue) as sender:
        # Longer than the queue's 5 s lock: the host must renew it while the function runs.
        sender.send_messages(ServiceBusMessage("slow:8", message_id=message_id))
    deadline = time.monotonic() + 30
    while f"slow invocation started: {message_id}" not in host.log():
        assert time.monotonic() < deadline, host.log()
        time.sleep(0.1)
    assert host.process.stop(timeout=30) == 0
    assert "function=single" in host.log() and "outcome=succeeded" in host.log()
    [report] = _reports(bus, report_queue, 1)
    assert report["message_id"] == message_id and report["attempts"] == 1
    with bus.get_queue_receiver(queue) as receiver:  # completed: nothing comes back after the lock time
        assert receiver.receive_messages(max_message_count=1, max_wait_time=6) == []
