"""Peek-lock settlement: complete, abandon, defer, dead-letter, release, lock expiry and renewal,
the dead-letter sub-queue, scheduling, duplicate detection and TTL."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, MessageNotFoundError, ServiceBusError

from tests.integration.servicebus.messaging import receive, send

pytestmark = pytest.mark.integration




def test_abandon_redelivers_with_delivery_count_plus_one(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, ServiceBusMessage("retry me"))
    with client.get_queue_receiver(queue) as receiver:
        [first] = receive(receiver)
        assert first.delivery_count == 0
        receiver.abandon_message(first)
        [second] = receive(receiver)
        assert str(second) == "retry me"
        assert second.sequence_number == first.sequence_number
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        receiver.complete_message(second)


def test_max_delivery_count_moves_the_message_to_the_dead_letter_queue_with_the_real_reason(client, servicebus_queue):
    queue = servicebus_queue("plain")  # MaxDeliveryCount 3
    send(client, queue, ServiceBusMessage("poison", message_id="poison-1"))
    with client.get_queue_receiver(queue) as receiver:
        for attempt in range(3):
            [msg] = receive(receiver)
            assert msg.delivery_count == attempt
            receiver.abandon_message(msg)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.7) == []
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq)
        assert dead.message_id == "poison-1"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.dead_letter_error_description == "Message could not be consumed after 3 delivery attempts."
        dlq.complete_message(dead)
        assert dlq.peek_messages(max_message_count=5, sequence_number=1) == []


def test_dead_letter_with_reason_then_peek_receive_and_settle_in_the_dead_letter_queue(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, ServiceBusMessage("bad payload", message_id="bad-1"), ServiceBusMessage("keep"))
    with client.get_queue_receiver(queue) as receiver:
        bad, keep = receive(receiver, 2)
        receiver.dead_letter_message(bad, reason="ValidationFailed", error_description="field 'qty' is not a number")
        receiver.complete_message(keep)
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [peeked] = dlq.peek_messages(max_message_count=10, sequence_number=1)
        assert peeked.message_id == "bad-1"
        assert peeked.dead_letter_reason == "ValidationFailed"
        assert peeked.dead_letter_error_description == "field 'qty' is not a number"
        [dead] = receive(dlq)
        assert dead.dead_letter_reason == "ValidationFailed"
        assert str(dead) == "bad payload"
        dlq.abandon_message(dead)  # back into the dead-letter queue, count +1, no further dead-lettering
        [again] = receive(dlq)
        assert again.delivery_count == dead.delivery_count + 1
        dlq.complete_message(again)
        assert dlq.peek_messages(max_message_count=10, sequence_number=1) == []
    with client.get_queue_receiver(queue) as receiver:
        assert receiver.peek_messages(max_message_count=10, sequence_number=1) == []


def test_sending_to_the_dead_letter_queue_is_refused(client, servicebus_queue):
    queue = servicebus_queue("plain")
    with pytest.raises(ServiceBusError), client.get_queue_sender(f"{queue}/$DeadLetterQueue") as sender:
        sender.send_messages(ServiceBusMessage("x"))


def test_defer_then_receive_deferred_by_sequence_number_and_complete(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, ServiceBusMessage("later"), ServiceBusMessage("now"))
    with client.get_queue_receiver(queue) as receiver:
        later, now = receive(receiver, 2)
        receiver.defer_message(later)
        receiver.complete_message(now)
        assert (
            receiver.receive_messages(max_message_count=1, max_wait_time=0.7) == []
        )  # deferred messages are not delivered again
        [peeked] = receiver.peek_messages(max_message_count=5, sequence_number=1)
        assert peeked.state == ServiceBusMessageState.DEFERRED
        [deferred] = receiver.receive_deferred_messages([later.sequence_number])
        assert str(deferred) == "later"
        assert deferred.lock_token is not None
        receiver.renew_message_lock(deferred)
        receiver.complete_message(deferred)  # settles through $management
        assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []


def test_deferred_messages_abandoned_and_dead_lettered_through_management(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, ServiceBusMessage("retry"), ServiceBusMessage("give up", message_id="gu-1"))
    with client.get_queue_receiver(queue) as receiver:
        retry, give_up = receive(receiver, 2)
        receiver.defer_message(retry)
        receiver.defer_message(give_up)
        [r, g] = receiver.receive_deferred_messages([retry.sequence_number, give_up.sequence_number])
        receiver.abandon_message(r)  # stays deferred, one more failed delivery
        receiver.dead_letter_message(g, reason="Unmappable", error_description="no such company")
        [again] = receiver.receive_deferred_messages([retry.sequence_number])
        assert (str(again), again.delivery_count) == ("retry", 1)
        receiver.complete_message(again)
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq)
        assert (dead.message_id, dead.dead_letter_reason) == ("gu-1", "Unmappable")
        assert dead.dead_letter_error_description == "no such company"
        dlq.complete_message(dead)


def test_receive_deferred_of_an_unknown_sequence_number_fails(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    # message-not-found is retryable for the SDK (as with the real service): no retries here.
    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as client,
        client.get_queue_receiver(queue) as receiver,
        pytest.raises(MessageNotFoundError),
    ):
        receiver.receive_deferred_messages([987654])


def test_closing_a_receiver_releases_prefetched_messages_without_counting_a_delivery(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, *[ServiceBusMessage(f"p{i}") for i in range(5)])
    with client.get_queue_receiver(queue, prefetch_count=5) as receiver:
        [first] = receive(receiver)
        receiver.complete_message(first)
    with client.get_queue_receiver(queue) as receiver:
        rest = receive(receiver, 4)
        assert sorted(str(m) for m in rest) == ["p1", "p2", "p3", "p4"]
        assert [m.delivery_count for m in rest] == [0, 0, 0, 0]
        for m in rest:
            receiver.complete_message(m)


def test_lock_expiry_returns_the_message_with_count_plus_one_and_old_lock_is_lost(client, servicebus_queue):
    queue = servicebus_queue("plain")  # LockDuration 2 s
    send(client, queue, ServiceBusMessage("slow"))
    with client.get_queue_receiver(queue) as receiver:
        [msg] = receive(receiver)
        time.sleep(2.5)
        [again] = receive(receiver)
        assert again.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(msg)
        receiver.complete_message(again)


def test_renew_lock_keeps_the_message_locked(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, ServiceBusMessage("long job"))
    with client.get_queue_receiver(queue) as receiver:
        [msg] = receive(receiver)
        first_until = msg.locked_until_utc
        time.sleep(1.2)
        new_until = receiver.renew_message_lock(msg)
        assert new_until > first_until
        time.sleep(1.2)  # past the first lock's expiry
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        receiver.complete_message(msg)


async def test_async_abandon_defer_dead_letter_and_complete(aclient: AsyncServiceBusClient, servicebus_queue):
    queue = servicebus_queue("plain")
    async with aclient.get_queue_sender(queue) as sender:
        await sender.send_messages([ServiceBusMessage(s) for s in ("a", "b", "c")])
    async with aclient.get_queue_receiver(queue) as receiver:
        got = []
        while len(got) < 3:
            got += await receiver.receive_messages(max_message_count=3, max_wait_time=1)
        by_body = {str(m): m for m in got}
        await receiver.abandon_message(by_body["a"])
        await receiver.defer_message(by_body["b"])
        await receiver.dead_letter_message(by_body["c"], reason="Rejected", error_description="async")
        [a_again] = await receiver.receive_messages(max_message_count=1, max_wait_time=2)
        assert (str(a_again), a_again.delivery_count) == ("a", 1)
        await receiver.complete_message(a_again)
        [b] = await receiver.receive_deferred_messages([by_body["b"].sequence_number])
        await receiver.complete_message(b)
    async with aclient.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [c] = await dlq.receive_messages(max_message_count=1, max_wait_time=2)
        assert (c.dead_letter_reason, c.dead_letter_error_description) == ("Rejected", "async")
        await dlq.complete_message(c)


def test_schedule_and_cancel_scheduled_messages(client, servicebus_queue):
    queue = servicebus_queue("plain")
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    with client.get_queue_sender(queue) as sender:
        [kept] = sender.schedule_messages(ServiceBusMessage("on time"), at)
        [cancelled] = sender.schedule_messages(ServiceBusMessage("never"), at)
        sender.cancel_scheduled_messages(cancelled)
        sender.send_messages(ServiceBusMessage("via property", scheduled_enqueue_time_utc=at))
    with client.get_queue_receiver(queue) as receiver:
        peeked = receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert peeked[0].sequence_number == kept
        assert {p.state for p in peeked} == {ServiceBusMessageState.SCHEDULED}
        assert len(peeked) == 2
        assert dt.datetime.now(dt.UTC) < at, "setup took too long for this test to mean anything"
        assert receiver.receive_messages(max_message_count=5, max_wait_time=0.5) == []
        got = receive(receiver, 2, wait=8)
        assert sorted(str(m) for m in got) == ["on time", "via property"]
        assert all(m.enqueued_time_utc >= at - dt.timedelta(milliseconds=200) for m in got)
        for m in got:
            receiver.complete_message(m)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.7) == []


def test_duplicate_detection_drops_a_repeated_message_id_within_the_window(client, servicebus_queue):
    queue = servicebus_queue("dedupe")  # window 3 s
    with (
        client.get_queue_sender(queue) as sender,
        client.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver,
    ):
        sender.send_messages(
            [ServiceBusMessage("first", message_id="evt-1"), ServiceBusMessage("b", message_id="evt-2")]
        )
        first_sent = time.monotonic()
        sender.send_messages(ServiceBusMessage("dup", message_id="evt-1"))
        got = receive(receiver, 2)
        assert sorted(str(m) for m in got) == ["b", "first"]
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.7) == []
        time.sleep(max(0.0, first_sent + 3.3 - time.monotonic()))
        sender.send_messages(ServiceBusMessage("after window", message_id="evt-1"))
        assert [str(m) for m in receive(receiver)] == ["after window"]


def test_plain_queue_does_not_drop_repeated_message_ids(client, servicebus_queue):
    queue = servicebus_queue("plain")
    send(client, queue, ServiceBusMessage("1", message_id="same"), ServiceBusMessage("2", message_id="same"))
    with client.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        assert sorted(str(m) for m in receive(receiver, 2)) == ["1", "2"]


def test_expired_messages_are_dead_lettered_when_the_queue_says_so(client, servicebus_queue):
    queue = servicebus_queue("ttl-dead-letter")  # default TTL 1 s
    send(client, queue, ServiceBusMessage("stale", message_id="ttl-1"))
    time.sleep(1.5)
    with client.get_queue_receiver(queue) as receiver:
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq)
        assert dead.message_id == "ttl-1"
        assert dead.dead_letter_reason == "TTLExpiredException"
        assert dead.dead_letter_error_description == "The message expired and was dead lettered."
        dlq.complete_message(dead)


def test_expired_messages_are_dropped_otherwise_and_a_message_ttl_applies_without_a_queue_default(
    client, servicebus_queue
):
    queue = servicebus_queue("ttl-drop")
    send(client, queue, ServiceBusMessage("gone"))
    plain = servicebus_queue("plain")
    send(client, plain, ServiceBusMessage("short-lived", time_to_live=dt.timedelta(seconds=1)), ServiceBusMessage("ok"))
    time.sleep(1.5)
    with client.get_queue_receiver(queue) as receiver:
        assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []
    with client.get_queue_receiver(plain, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        assert dlq.peek_messages(max_message_count=5, sequence_number=1) == []
    with client.get_queue_receiver(plain) as receiver:
        [ok] = receive(receiver)
        assert str(ok) == "ok"
        receiver.complete_message(ok)
