"""Reachability probes of the two Azure services the engine depends on.

Each probe opens a fresh client on purpose: it answers "can a new connection be made right now",
and a cached client could hide a dead endpoint behind an old connection.
"""

from __future__ import annotations

from core.store.bus import service_bus_client
from core.store.tables import table_service_client


async def probe_table_storage(connection_string: str) -> None:
    """Raise unless the account answers a table listing."""
    async with table_service_client(connection_string) as service:
        async for _ in service.list_tables(results_per_page=1):
            break


async def probe_servicebus(connection_string: str, queue_name: str) -> None:
    """Raise unless a sender link to `queue_name` opens (connection, CBS token and entity all work)."""
    client = service_bus_client(connection_string, retry_total=0)
    async with client, client.get_queue_sender(queue_name):
        pass
