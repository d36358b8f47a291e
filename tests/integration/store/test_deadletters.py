"""Dead letters through the real SDK against the emulator, on a session-enabled queue."""

from __future__ import annotations

from collections.abc import Callable

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from core.store.deadletters import DeadLetters
from tests.fixtures.servicebus import ServiceBusEmulator


async def dead_letter_three(connection: str, queue: str) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages([
                ServiceBusMessage(f'{{"n": {i}}}', message_id=f"evt-{i}|customers", session_id=f"customers|K{i}",
                                  application_properties={"map": "customers"})
                for i in range(3)
            ])
        for i in range(3):
            async with client.get_queue_receiver(queue, session_id=f"customers|K{i}", max_wait_time=2) as receiver:
                (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
                await receiver.dead_letter_message(message, reason="ApplyFailed", error_description=f"bad {i}")


async def test_peek_and_take(servicebus_emulator: ServiceBusEmulator, servicebus_queue: Callable[[str], str]) -> None:
    queue = servicebus_queue("session")
    connection = servicebus_emulator.connection_string
    await dead_letter_three(connection, queue)
    dead = DeadLetters(connection, queue)
    try:
        peeked = await dead.peek(10)
        assert [d.message_id for d in peeked] == ["evt-0|customers", "evt-1|customers", "evt-2|customers"]
        first = peeked[0]
        assert (first.session_id, first.body, first.reason, first.description) == (
            "customers|K0", '{"n": 0}', "ApplyFailed", "bad 0")
        assert first.properties["map"] == "customers" and first.enqueued_at is not None
        assert len(await dead.peek(2)) == 2

        taken = await dead.take("evt-1|customers")
        assert taken is not None and taken.session_id == "customers|K1" and taken.description == "bad 1"
        assert await dead.take("evt-1|customers") is None
        assert await dead.take("never-sent") is None
        left = await dead.peek(10)
        assert [d.message_id for d in left] == ["evt-0|customers", "evt-2|customers"]
        assert await dead.find("evt-2|customers") is not None
    finally:
        await dead.close()
