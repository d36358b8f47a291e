"""The changes-queue sender under concurrent ingest: every send lands, in one piece, through the real SDK."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from azure.servicebus.aio import ServiceBusClient

from core.events.model import ChangeEvent
from core.store.queues import ChangeQueue, QueuedChange


def _change(n: int) -> QueuedChange:
    event = ChangeEvent(event_id=f"e{n}", map="customers", source="fno", entity="CustomersV3", operation="refetch",
                        keys={"dataAreaId": "usmf", "CustomerAccount": f"C-{n}"}, occurred_at=datetime.now(UTC))
    return QueuedChange(event, session_id=f"customers|fno|USMF|C-{n % 5}", message_id=f"e{n}|customers")


async def test_concurrent_sends_all_arrive(servicebus_emulator: Any) -> None:
    queue_name = servicebus_emulator.take("session")
    queue = ChangeQueue(servicebus_emulator.connection_string, queue_name)
    limit = asyncio.Semaphore(8)

    async def send(n: int) -> None:
        async with limit:
            await queue.send([_change(n)])

    try:
        await asyncio.gather(*(send(n) for n in range(40)))
    finally:
        await queue.close()
    seen: set[str] = set()
    async with ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as client:
        for session in range(5):
            receiver = client.get_queue_receiver(queue_name, session_id=f"customers|fno|USMF|C-{session}",
                                                 max_wait_time=2)
            async with receiver:
                for message in await receiver.receive_messages(max_message_count=20, max_wait_time=2):
                    seen.add(str(message.message_id))
                    await receiver.complete_message(message)
    assert seen == {f"e{n}|customers" for n in range(40)}
