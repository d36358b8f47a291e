"""Output bindings the app uses: Service Bus queue output, sent with the real async SDK over one
client per connection and one sender per queue, reused across invocations."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

from devstack.host.indexing import ServiceBusOutput


class OutputSender:
    def __init__(self) -> None:
        self._clients: dict[str, ServiceBusClient] = {}
        self._senders: dict[tuple[str, str], ServiceBusSender] = {}
        self._lock = asyncio.Lock()

    async def send(self, function_name: str, target: ServiceBusOutput, value: Any) -> None:
        # Like the worker's converter: a str or bytes body per output, nothing else.
        if not isinstance(value, str | bytes):
            raise TypeError(
                f"function {function_name!r}: Service Bus output {target.name!r} takes str or bytes, "
                f"got {type(value).__name__}"
            )
        sender = await self._sender(target)
        await sender.send_messages(ServiceBusMessage(value))

    async def _sender(self, target: ServiceBusOutput) -> ServiceBusSender:
        key = (target.connection, target.queue_name)
        async with self._lock:
            if key not in self._senders:
                client = self._clients.get(target.connection)
                if client is None:
                    client = ServiceBusClient.from_connection_string(connection_string(target.connection))
                    self._clients[target.connection] = client
                self._senders[key] = client.get_queue_sender(target.queue_name)
            return self._senders[key]

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        for client in self._clients.values():
            await client.close()
        self._senders.clear()
        self._clients.clear()


def connection_string(setting: str) -> str:
    """The connection string held by app setting `setting` (the binding's `connection`)."""
    value = os.environ.get(setting) or os.environ.get(f"AzureWebJobs{setting}")
    if not value:
        raise LookupError(f"Service Bus connection setting {setting!r} is not set in the app settings")
    return value
