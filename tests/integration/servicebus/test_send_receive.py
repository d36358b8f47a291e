"""Sending (single, list, batch), receiving (peek-lock, receive-and-delete), competing consumers."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError
from proton import Message

pytestmark = pytest.mark.integration


def test_single_message_round_trips_body_properties_and_broker_annotations(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("plain")
    sent = ServiceBusMessage(
        b"\x00\x01 binary body",
        message_id="order-1",
        correlation_id="corr-1",
        subject="orders",
        content_type="application/octet-stream",
        application_properties={"company": "USMF", "attempt": 3},
    )
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(sent)
    with client.get_queue_receiver(queue, max_wait_time=5) as receiver:
        [got] = receiver.receive_messages(max_message_count=5, max_wait_time=2)
        assert b"".join(got.body) == b"\x00\x01 binary body"
        assert got.message_id == "order-1"
        assert got.correlation_id == "corr-1"
        assert got.subject == "orders"
        assert got.content_type == "application/octet-stream"
        assert got.application_properties == {b"company": b"USMF", b"attempt": 3}
        assert got.delivery_count == 0
        assert got.sequence_number >= 1
        assert isinstance(got.lock_token, uuid.UUID | str)
        now = dt.datetime.now(dt.UTC)
        assert abs((got.enqueued_time_utc - now).total_seconds()) < 30
        assert got.locked_until_utc > got.enqueued_time_utc
        receiver.complete_message(got)
        assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []


def test_list_and_batch_sends_arrive_as_separate_messages_in_order(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("plain")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(f"list-{i}", message_id=f"l{i}") for i in range(5)])
        batch = sender.create_message_batch()
        for i in range(5):
            batch.add_message(ServiceBusMessage(f"batch-{i}", application_properties={"i": i}))
        sender.send_messages(batch)
    with client.get_queue_receiver(queue) as receiver:
        got = []
        while len(got) < 10:
            chunk = receiver.receive_messages(max_message_count=10, max_wait_time=2)
            assert chunk, f"only {len(got)} of 10 messages arrived"
            got += chunk
        assert [str(m) for m in got] == [f"list-{i}" for i in range(5)] + [f"batch-{i}" for i in range(5)]
        assert [m.message_id for m in got[:5]] == [f"l{i}" for i in range(5)]
        assert [m.application_properties[b"i"] for m in got[5:]] == list(range(5))
        seqs = [m.sequence_number for m in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 10
        for m in got:
            receiver.complete_message(m)


def test_a_single_message_whose_body_looks_like_an_encoded_message_is_not_taken_for_a_batch(
    client: ServiceBusClient, servicebus_queue
):
    """The batch format is read from the transfer, not guessed from the payload."""
    queue = servicebus_queue("plain")
    inner = bytes(Message(body=b"I look like a batch entry", id="inner").encode())
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage(inner, message_id="outer"))
    with client.get_queue_receiver(queue) as receiver:
        got = receiver.receive_messages(max_message_count=5, max_wait_time=2)
        assert [m.message_id for m in got] == ["outer"]
        assert b"".join(got[0].body) == inner
        receiver.complete_message(got[0])


def test_receive_and_delete_removes_messages_on_delivery(client: ServiceBusClient, servicebus_queue):
    queue = servicebus_queue("plain")
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(3)])
    with client.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        got = []
        while len(got) < 3:
            chunk = receiver.receive_messages(max_message_count=3, max_wait_time=2)
            assert chunk
            got += chunk
        assert sorted(str(m) for m in got) == ["m0", "m1", "m2"]
    with client.get_queue_receiver(queue) as receiver:
        assert receiver.peek_messages(max_message_count=10, sequence_number=1) == []
        assert receiver.receive_messages(max_wait_time=1) == []


async def test_async_client_sends_a_batch_and_completes_it(aclient: AsyncServiceBusClient, servicebus_queue):
    queue = servicebus_queue("plain")
    async with aclient.get_queue_sender(queue) as sender:
        batch = await sender.create_message_batch()
        for i in range(20):
            batch.add_message(ServiceBusMessage(f"a{i}"))
        await sender.send_messages(batch)
        await sender.send_messages(ServiceBusMessage("single"))
    got = []
    async with aclient.get_queue_receiver(queue) as receiver:
        while len(got) < 21:
            chunk = await receiver.receive_messages(max_message_count=21, max_wait_time=2)
            assert chunk, f"only {len(got)} of 21 arrived"
            for m in chunk:
                await receiver.complete_message(m)
            got += chunk
        assert [str(m) for m in got] == [f"a{i}" for i in range(20)] + ["single"]
        assert await receiver.peek_messages(max_message_count=5, sequence_number=1) == []


def test_competing_consumers_never_get_the_same_message(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    total = 200
    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as sb,
        sb.get_queue_sender(queue) as sender,
    ):
        for start in range(0, total, 50):
            sender.send_messages([ServiceBusMessage(f"{i}") for i in range(start, start + 50)])
    received: list[list[str]] = [[] for _ in range(4)]
    done = threading.Event()

    def consume(slot: int) -> None:
        with (
            ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as sb,
            sb.get_queue_receiver(queue) as receiver,
        ):
            while not done.is_set():
                for m in receiver.receive_messages(max_message_count=10, max_wait_time=1):
                    received[slot].append(str(m))
                    receiver.complete_message(m)
                if sum(len(r) for r in received) >= total:
                    done.set()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    done.wait(60)
    done.set()
    for t in threads:
        t.join(30)
    everything = [m for r in received for m in r]
    assert sorted(everything, key=int) == [str(i) for i in range(total)]  # each exactly once
    assert sum(1 for r in received if r) >= 2, "work was not shared between receivers"


async def test_async_competing_consumers(aclient: AsyncServiceBusClient, servicebus_queue):
    queue = servicebus_queue("plain")
    async with aclient.get_queue_sender(queue) as sender:
        await sender.send_messages([ServiceBusMessage(f"{i}") for i in range(60)])
    seen: list[str] = []

    async def consume() -> None:
        async with aclient.get_queue_receiver(queue) as receiver:
            while len(seen) < 60:
                for m in await receiver.receive_messages(max_message_count=5, max_wait_time=1):
                    seen.append(str(m))
                    await receiver.complete_message(m)

    await asyncio.wait_for(asyncio.gather(*(consume() for _ in range(3))), 60)
    assert sorted(seen, key=int) == [str(i) for i in range(60)]


def test_unknown_queue_raises_entity_not_found(client: ServiceBusClient):
    with pytest.raises(MessagingEntityNotFoundError), client.get_queue_sender("no-such-queue") as sender:
        sender.send_messages(ServiceBusMessage("x"))
    with pytest.raises(MessagingEntityNotFoundError), client.get_queue_receiver("no-such-queue") as receiver:
        receiver.receive_messages(max_wait_time=1)


async def test_unknown_queue_raises_entity_not_found_async(aclient: AsyncServiceBusClient):
    with pytest.raises(MessagingEntityNotFoundError):
        async with aclient.get_queue_sender("no-such-queue") as sender:
            await sender.send_messages(ServiceBusMessage("x"))
    with pytest.raises(MessagingEntityNotFoundError):
        async with aclient.get_queue_receiver("no-such-queue") as receiver:
            await receiver.receive_messages(max_wait_time=1)
