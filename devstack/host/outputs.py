"""Output bindings the app uses: Service Bus queue output, sent with the real async SDK over one
client per connection and one sender per queue, reused across invocations."""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from typing import Any

import certifi
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
                    client = bus_client(target.connection)
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


def bus_client(setting: str) -> ServiceBusClient:
    """A client for the connection in app setting `setting`. All share one TLS context: the SDK
    otherwise builds one per connection (loading the CA bundle, ~20 ms of CPU), and a session
    receiver is a connection of its own."""
    return ServiceBusClient.from_connection_string(connection_string(setting), ssl_context=_tls_context())


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def connection_string(setting: str) -> str:
    """The connection string held by app setting `setting` (the binding's `connection`)."""
    value = os.environ.get(setting) or os.environ.get(f"AzureWebJobs{setting}")
    if not value:
        raise LookupError(f"Service Bus connection setting {setting!r} is not set in the app settings")
    return value
