"""Table Storage access: one async service client per process, tables created once on first use."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableClient, TableServiceClient

from core.store.credentials import connection_parts, credential_of

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_EPOCH_TICKS = 621_355_968_000_000_000  # .NET ticks at 1970-01-01
_MAX_TICKS = 10**19 - 1


def newest_first_key(at: datetime) -> str:
    """A RowKey that sorts newest first (inverted .NET ticks) and is unique (a short uuid after it)."""
    micros = int((at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    return f"{_MAX_TICKS - (_EPOCH_TICKS + micros * 10):019d}-{uuid.uuid4().hex[:8]}"


def table_service_client(connection: str) -> TableServiceClient:
    """A client of the account: from a connection string (keys, Azurite), or from an identity-based connection
    (`TableServiceUri=https://...`, from TABLE_STORAGE_CONNECTION__tableServiceUri: core/store/credentials.py)."""
    parts = connection_parts(connection)
    endpoint = parts.get("tableserviceuri")
    if endpoint:
        return TableServiceClient(endpoint, credential=credential_of(parts))
    return TableServiceClient.from_connection_string(connection)


class Tables:
    """The engine's tables (`links`, `linkids`, `activity`, `errors`), optionally behind a prefix
    so tests can keep their own set in one Azurite."""

    def __init__(self, connection_string: str, prefix: str = "") -> None:
        self.prefix = prefix
        self._service = table_service_client(connection_string)
        self._clients: dict[str, TableClient] = {}
        self._lock = asyncio.Lock()

    def full_name(self, name: str) -> str:
        full = f"{self.prefix}{name}"
        if not _TABLE_NAME.match(full):
            raise ValueError(f"table name {full!r} must be 3-63 letters or digits, starting with a letter")
        return full

    async def table(self, name: str) -> TableClient:
        """The client of table `name` (prefixed), creating the table the first time this process asks."""
        client = self._clients.get(name)
        if client is not None:
            return client
        async with self._lock:
            if name not in self._clients:
                full = self.full_name(name)
                with contextlib.suppress(ResourceExistsError):  # made earlier or by another worker: fine
                    await self._service.create_table(full)
                self._clients[name] = self._service.get_table_client(full)
            return self._clients[name]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self._service.close()
