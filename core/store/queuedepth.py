"""How many messages wait on a queue, from Service Bus's management API (`get_queue_runtime_properties`).

It needs a key or role with Manage rights on the namespace; the emulators (Microsoft's and ours) have no
management API at all, so there the depth is not reported and the metrics say why.
"""

from __future__ import annotations

import logging

from azure.core.exceptions import AzureError
from azure.servicebus.aio.management import ServiceBusAdministrationClient

from core.store.credentials import connection_parts, credential_of

log = logging.getLogger(__name__)


class QueueDepthReader:
    def __init__(self, connection_string: str, queue: str) -> None:
        self.queue = queue
        self._connection = connection_string
        self._parts = connection_parts(connection_string)
        self.emulator = self._parts.get("usedevelopmentemulator") == "true"
        self._client: ServiceBusAdministrationClient | None = None

    async def __call__(self) -> tuple[int | None, str]:
        """(active messages, what they are) or (None, why there is no figure)."""
        if self.emulator:
            return None, ("the emulator has no management API: what waits on the queue shows as queue_wait_max_s "
                          "once it is applied")
        try:
            if self._client is None:
                # one try a call: the metrics are asked again soon, and a page waiting on retries helps nobody
                self._client = self._admin_client()
            properties = await self._client.get_queue_runtime_properties(self.queue)
        except AzureError as error:  # no Manage right, or the namespace not answering: the other figures stand
            log.warning("metrics: the depth of queue %s cannot be read (%s)", self.queue, type(error).__name__)
            return None, f"Service Bus's management API did not answer ({type(error).__name__}; it needs Manage rights)"
        return int(properties.active_message_count or 0), f"active messages on queue {self.queue}"

    def _admin_client(self) -> ServiceBusAdministrationClient:
        namespace = self._parts.get("fullyqualifiednamespace")
        if namespace:  # identity-based: the identity needs Manage rights (Azure Service Bus Data Owner)
            return ServiceBusAdministrationClient(namespace, credential_of(self._parts), retry_total=0)
        return ServiceBusAdministrationClient.from_connection_string(self._connection, retry_total=0)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
