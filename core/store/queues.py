"""The changes queue: change events out to Service Bus, batched, one reused client.

Each message carries `message_id` = the stable source event id plus the map (the broker's
duplicate detection drops a second delivery of the same event) and `session_id` = map + record,
so the apply function sees one record's changes in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusSender
from azure.servicebus.exceptions import ServiceBusError

from core.events.model import ChangeEvent
from core.ops import telemetry
from core.store.bus import service_bus_client
from core.sync.runs import PageJob

if TYPE_CHECKING:
    from core.sync.catchup import CatchUpJob


@dataclass(frozen=True)
class QueuedChange:
    """One message for the changes queue."""

    event: ChangeEvent
    session_id: str
    message_id: str
    properties: dict[str, str] = field(default_factory=dict)
    scheduled_at: datetime | None = None  # a retry: the broker holds it back until then

    def message(self) -> ServiceBusMessage:
        event = self.event
        properties: dict[str, Any] = {"map": event.map or "", "source": event.source, "entity": event.entity,
                                      "operation": event.operation, **self.properties}
        # The trace context: the change's own when it is sent again (a retry keeps its first trace), else the
        # current one (the ingest span); core.ops.telemetry.
        return ServiceBusMessage(event.to_json(), message_id=self.message_id, session_id=self.session_id,
                                 content_type="application/json",
                                 application_properties=telemetry.outgoing(properties),
                                 scheduled_enqueue_time_utc=self.scheduled_at)


class QueueSender:
    """Sends messages to one queue. Open once per process and reuse (a link per send is slow)."""

    def __init__(self, connection_string: str, queue_name: str) -> None:
        self.queue_name = queue_name
        self._connection_string = connection_string
        self._client = service_bus_client(connection_string)
        self._sender: ServiceBusSender | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ServiceBusSender:
        if self._sender is None:
            sender = self._client.get_queue_sender(self.queue_name)
            await sender.__aenter__()
            self._sender = sender
        return self._sender

    async def _reset(self, *, client: bool = False) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close()
        if client:  # a dropped connection can leave the client unable to reconnect: start afresh
            old, self._client = self._client, service_bus_client(self._connection_string)
            with contextlib.suppress(Exception):
                await old.close()

    async def send_messages(self, messages: list[ServiceBusMessage]) -> None:
        """Send all of `messages`, in as few batches as fit; raises if any could not be sent.

        One send at a time: the SDK's sender is not safe for concurrent sends (transfers leave out
        of order and the broker drops the link). A failed link is dropped and reopened once, so one
        broken connection does not poison every later request."""
        if not messages:
            return
        async with self._lock:
            for attempt in (1, 2):
                try:
                    await self._send(await self._open(), messages)
                    return
                except (ServiceBusError, AttributeError, OSError):
                    await self._reset(client=True)
                    if attempt == 2:
                        raise

    @staticmethod
    async def _send(sender: ServiceBusSender, messages: list[ServiceBusMessage]) -> None:
        batch = await sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except ValueError:  # batch full: send it and start the next one
                await sender.send_messages(batch)
                batch = await sender.create_message_batch()
                batch.add_message(message)
        await sender.send_messages(batch)

    async def close(self) -> None:
        async with self._lock:
            await self._reset()
        await self._client.close()


class ChangeQueue(QueueSender):
    """The changes queue (live sync, retries, resubmits)."""

    async def send(self, changes: list[QueuedChange]) -> None:
        await self.send_messages([change.message() for change in changes])


class PageJobQueue(QueueSender):
    """The sync-pages queue: one message per page of an initial sync or reconciliation run, or per round of
    a map's catch-up. The message id names the page (round), so the broker's duplicate detection keeps a
    job sent twice to one."""

    async def send_catch_up(self, job: CatchUpJob, *, at: datetime | None = None) -> None:
        await self.send_messages([ServiceBusMessage(job.to_json(), message_id=job.message_id(),
                                                    content_type="application/json", scheduled_enqueue_time_utc=at,
                                                    application_properties={"kind": job.kind, "map": job.map})])

    async def send(self, jobs: list[PageJob], *, at: datetime | None = None) -> None:
        await self.send_messages([ServiceBusMessage(job.to_json(), message_id=job.message_id(),
                                                    content_type="application/json", scheduled_enqueue_time_utc=at,
                                                    application_properties={"run": job.run, "map": job.map})
                                  for job in jobs])
