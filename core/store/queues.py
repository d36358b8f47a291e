"""The changes queue: change events out to Service Bus, batched, one reused client.

Each message carries `message_id` = the stable source event id plus the map (the broker's
duplicate detection drops a second delivery of the same event) and `session_id` = map + record,
so the apply function sees one record's changes in order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

from core.events.model import ChangeEvent


@dataclass(frozen=True)
class QueuedChange:
    """One message for the changes queue."""

    event: ChangeEvent
    session_id: str
    message_id: str
    properties: dict[str, str] = field(default_factory=dict)

    def message(self) -> ServiceBusMessage:
        event = self.event
        properties = {"map": event.map or "", "source": event.source, "entity": event.entity,
                      "operation": event.operation, **self.properties}
        return ServiceBusMessage(event.to_json(), message_id=self.message_id, session_id=self.session_id,
                                 content_type="application/json", application_properties=properties)


class ChangeQueue:
    """Sends change events to one queue. Open once per process and reuse (a link per send is slow)."""

    def __init__(self, connection_string: str, queue_name: str) -> None:
        self.queue_name = queue_name
        self._client = ServiceBusClient.from_connection_string(connection_string)
        self._sender: ServiceBusSender | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ServiceBusSender:
        async with self._lock:
            if self._sender is None:
                self._sender = self._client.get_queue_sender(self.queue_name)
                await self._sender.__aenter__()
            return self._sender

    async def send(self, changes: list[QueuedChange]) -> None:
        """Send all of `changes`, in as few batches as fit; raises if any could not be sent."""
        if not changes:
            return
        sender = await self._open()
        batch = await sender.create_message_batch()
        for change in changes:
            message = change.message()
            try:
                batch.add_message(message)
            except ValueError:  # batch full: send it and start the next one
                await sender.send_messages(batch)
                batch = await sender.create_message_batch()
                batch.add_message(message)
        await sender.send_messages(batch)

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
            self._sender = None
        await self._client.close()
