"""Sessions: named and NEXT_AVAILABLE receivers, one receiver per session, state, lock renewal and
expiry, deferral inside a session, and sends that a session queue refuses."""

from __future__ import annotations

import time
import uuid

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from tests.integration.servicebus.messaging import receive

pytestmark = pytest.mark.integration



def test_named_session_receives_only_its_messages_in_order(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("session")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(
            [ServiceBusMessage(f"{sid}-{i}", session_id=sid) for i in range(3) for sid in ("acct-1", "acct-2")]
        )
    with client.get_queue_receiver(queue, session_id="acct-2") as receiver:
        assert receiver.session.session_id == "acct-2"
        got = receive(receiver, 3)
        assert [str(m) for m in got] == ["acct-2-0", "acct-2-1", "acct-2-2"]
        assert {m.session_id for m in got} == {"acct-2"}
        for m in got:
            receiver.complete_message(m)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
    with client.get_queue_receiver(queue, session_id="acct-1") as receiver:
        got = receive(receiver, 3)
        assert [str(m) for m in got] == ["acct-1-0", "acct-1-1", "acct-1-2"]
        for m in got:
            receiver.complete_message(m)


def test_next_available_session_takes_a_session_with_messages(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("session")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("only", session_id="the-one"))
    with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as receiver:
        assert receiver.session.session_id == "the-one"
        assert receiver.session.locked_until_utc is not None
        [msg] = receive(receiver)
        assert (str(msg), msg.session_id) == ("only", "the-one")
        receiver.complete_message(msg)


def test_next_available_waits_for_a_session_then_times_out(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("session")
    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as client,
        pytest.raises(OperationTimeoutError),
        client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver,
    ):
        receiver.receive_messages(max_wait_time=1)


def test_one_receiver_per_session(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("session")  # LockDuration 2 s: the test renews before each slow step
    with ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage("b", session_id="busy"), ServiceBusMessage("f", session_id="free")])
        with client.get_queue_receiver(queue, session_id="busy") as first:
            assert first.session.session_id == "busy"
            with (
                pytest.raises(SessionCannotBeLockedError),
                client.get_queue_receiver(queue, session_id="busy") as second,
            ):
                second.receive_messages(max_wait_time=1)
            first.session.renew_lock()
            # While "busy" is held, NEXT_AVAILABLE skips it even though its message is older.
            with client.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=3) as other:
                assert other.session.session_id == "free"
                first.session.renew_lock()
                [m] = receive(other)
                other.complete_message(m)
            first.session.renew_lock()
            [b] = receive(first)
            assert str(b) == "b"
            first.complete_message(b)


def test_session_state_and_lock_renewal(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("session")
    with client.get_queue_receiver(queue, session_id="stateful") as receiver:
        assert receiver.session.get_state() is None
        receiver.session.set_state(b"checkpoint:42")
        assert receiver.session.get_state() == b"checkpoint:42"
        before = receiver.session.locked_until_utc
        time.sleep(0.2)
        after = receiver.session.renew_lock()
        assert after > before
        assert receiver.session.locked_until_utc == after
    with client.get_queue_receiver(queue, session_id="stateful") as receiver:
        assert receiver.session.get_state() == b"checkpoint:42"  # state outlives the receiver
        receiver.session.set_state(None)
        assert receiver.session.get_state() is None


def test_session_lock_expiry_loses_the_lock_and_returns_messages(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("session")  # LockDuration 2 s
    with ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("held too long", session_id="slow"))
        receiver = client.get_queue_receiver(queue, session_id="slow")
        with receiver:
            [msg] = receive(receiver)
            time.sleep(2.6)
            with pytest.raises(SessionLockLostError):
                receiver.complete_message(msg)
        with client.get_queue_receiver(queue, session_id="slow") as again:
            [retry] = receive(again)
            assert retry.delivery_count == 1
            again.complete_message(retry)


def test_abandon_and_defer_inside_a_session(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("session")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(s, session_id="s") for s in ("first", "second")])
    with client.get_queue_receiver(queue, session_id="s") as receiver:
        first, second = receive(receiver, 2)
        receiver.defer_message(first)
        receiver.abandon_message(second)
        [again] = receive(receiver)
        assert (str(again), again.delivery_count) == ("second", 1)
        receiver.complete_message(again)
        peeked = receiver.peek_messages(max_message_count=5, sequence_number=1)
        assert [str(p) for p in peeked] == ["first"]
        [deferred] = receiver.receive_deferred_messages([first.sequence_number])
        assert deferred.session_id == "s"
        receiver.complete_message(deferred)
        assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []


def test_dead_letter_from_a_session_lands_in_the_non_session_dead_letter_queue(client, servicebus_queue):
    queue = servicebus_queue("session")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage("broken", session_id="rec-9"))
    with client.get_queue_receiver(queue, session_id="rec-9") as receiver:
        [msg] = receive(receiver)
        receiver.dead_letter_message(msg, reason="MappingError", error_description="no company")
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq)
        assert (dead.session_id, dead.dead_letter_reason) == ("rec-9", "MappingError")
        dlq.complete_message(dead)


def test_session_queue_refuses_messages_without_session_and_plain_receivers(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("session")
    with ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as client:
        with pytest.raises(ServiceBusError), client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("no session"))
        with pytest.raises(ServiceBusError), client.get_queue_receiver(queue) as receiver:
            receiver.receive_messages(max_wait_time=1)
        plain = servicebus_queue("plain")
        with pytest.raises(ServiceBusError), client.get_queue_receiver(plain, session_id="x") as receiver:
            receiver.receive_messages(max_wait_time=1)


async def test_async_session_receiver_state_and_renewal(aclient: AsyncServiceBusClient, servicebus_queue):
    queue = servicebus_queue("session")
    async with aclient.get_queue_sender(queue) as sender:
        await sender.send_messages([ServiceBusMessage(f"m{i}", session_id="async-s") for i in range(3)])
    async with aclient.get_queue_receiver(queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as receiver:
        assert receiver.session.session_id == "async-s"
        await receiver.session.set_state("step-1")
        assert await receiver.session.get_state() == b"step-1"
        before = receiver.session.locked_until_utc
        assert await receiver.session.renew_lock() >= before
        got = []
        while len(got) < 3:
            got += await receiver.receive_messages(max_message_count=3, max_wait_time=1)
        assert [str(m) for m in got] == ["m0", "m1", "m2"]
        for m in got:
            await receiver.complete_message(m)


def test_the_engine_changes_queue_orders_per_record_and_drops_duplicate_events(client: ServiceBusClient):
    """`changes` as shipped: sessions per record and duplicate detection by source event id."""
    record = f"map-1|USMF|{uuid.uuid4()}"
    with client.get_queue_sender("changes") as sender:
        sender.send_messages(
            [ServiceBusMessage(f"v{i}", session_id=record, message_id=f"{record}|v{i}") for i in (1, 2)]
        )
        sender.send_messages(ServiceBusMessage("v1 again", session_id=record, message_id=f"{record}|v1"))
    with client.get_queue_receiver("changes", session_id=record) as receiver:
        got = receive(receiver, 2)
        assert [str(m) for m in got] == ["v1", "v2"]
        for m in got:
            receiver.complete_message(m)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.7) == []
