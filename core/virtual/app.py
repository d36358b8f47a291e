"""The composition of the virtual table service from settings: definitions, a source per table, the key index."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.connectors.auth import TokenSource
from core.settings import Settings
from core.virtual.catalog import load_folder
from core.virtual.model import FnoSource, SqlSource, TablesSource, VirtualTable
from core.virtual.service import KeyCheck, VirtualService
from core.virtual.source import SourceError, VirtualSource

log = logging.getLogger("core.virtual.sql")


def sql_engine(url: str, echo: bool = False) -> Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    if echo:
        # The statement's text only: its parameters are the caller's values (never logged), and the text
        # shows that they stayed parameters.
        @sa.event.listens_for(engine, "before_cursor_execute")
        def _log(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            log.info("virtual table SQL: %s", " ".join(statement.split()))

    return engine


def tokens_for(settings: Settings, url: str) -> TokenSource:
    """The engine's own way to a D365 environment (functions/runtime.py does the same for sync), per AUTH_MODE."""
    from core.connectors.auth import LOCAL_ENGINE_OID, IdentityTokens, LocalTokens, MsalTokens

    if settings.auth_mode == "local":
        return LocalTokens(settings.engine_user_id or LOCAL_ENGINE_OID)
    if settings.auth_mode == "identity":
        return IdentityTokens(url + "/.default", settings.client_id)
    if settings.tenant_id and settings.client_id and settings.client_secret:
        secret = settings.client_secret.get_secret_value()
        return MsalTokens(settings.tenant_id, settings.client_id, secret, url + "/.default")
    raise SourceError(
        500,
        "reading F&O or Dataverse needs AUTH_MODE msal with TENANT_ID, CLIENT_ID and CLIENT_SECRET, identity, or local",
    )


class Sources:
    """Builds each table's source on first use; one SQL engine per database URL, one F&O client, one Tables."""

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.engines: dict[str, Engine] = {}
        self._fno: Any = None
        self._tables: Any = None

    async def aclose(self) -> None:
        if self._fno is not None:
            await self._fno.aclose()
            self._fno = None
        if self._tables is not None:
            await self._tables.close()
            self._tables = None
        for engine in self.engines.values():
            engine.dispose()
        self.engines.clear()

    def sql_url(self, name: str) -> str:
        if name.upper() == "VIRTUAL_TABLES_SQL_URL" and self.settings.virtual_tables_sql_url is not None:
            return self.settings.virtual_tables_sql_url.get_secret_value()
        url = self.env.get(name) or self.env.get(name.upper())
        if not url:
            raise SourceError(500, f"app setting {name} (the SQL database of a virtual table) is not set")
        return url

    def __call__(self, table: VirtualTable) -> VirtualSource:
        source = table.source
        if isinstance(source, SqlSource):
            from core.virtual.sql import SqlSource as Sql

            url = self.sql_url(source.url_setting)
            if url not in self.engines:
                self.engines[url] = sql_engine(url, self.settings.virtual_tables_sql_echo)
            return Sql(table, self.engines[url], source.table, source.schema_name)
        if isinstance(source, FnoSource):
            from core.virtual.fno import FnoEntitySource

            return FnoEntitySource(table, source, self.fno())
        if isinstance(source, TablesSource):
            from core.virtual.tables import TableStorageSource

            return TableStorageSource(table, source, self.tables())
        raise TypeError(f"unknown source {source!r}")

    def fno(self) -> Any:
        if self._fno is None:
            from core.connectors.fno import FnoClient

            url = str(self.settings.fno_url).rstrip("/")
            tokens = tokens_for(self.settings, url)
            self._fno = FnoClient(url, tokens)
        return self._fno

    def tables(self) -> Any:
        if self._tables is None:
            from core.store.tables import Tables

            self._tables = Tables(self.settings.table_storage_connection.get_secret_value())
        return self._tables


def build_service(settings: Settings, env: Mapping[str, str] | None = None) -> VirtualService:
    from core.store.tables import Tables
    from core.virtual.keystore import TableKeyIndex

    tables = load_folder(settings.virtual_tables_path)
    key = settings.virtual_tables_key.get_secret_value() if settings.virtual_tables_key else None
    check = KeyCheck(key, settings.virtual_tables_key_header, settings.virtual_tables_key_param,
                     settings.virtual_tables_app_role or None)
    index = TableKeyIndex(Tables(settings.table_storage_connection.get_secret_value()))
    return VirtualService(tables, Sources(settings, os.environ if env is None else env), index, check)


class Notifier:
    """What the notification timer runs: every table with `notify`, told to Dataverse (core.virtual.notify)."""

    def __init__(self, settings: Settings, service: VirtualService) -> None:
        from core.connectors.dataverse import DataverseClient
        from core.store.tables import Tables
        from core.virtual.notify import TableCheckpoints, WebApiEvents

        url = str(settings.dataverse_url).rstrip("/")
        self.service = service
        self.client = DataverseClient(url, tokens_for(settings, url))
        self.events = WebApiEvents(self.client.http)
        self.checkpoints = TableCheckpoints(Tables(settings.table_storage_connection.get_secret_value()))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.checkpoints.tables.close()

    async def run(self) -> list[Any]:
        from core.virtual.notify import tell_all

        return await tell_all(self.service, self.events, self.checkpoints)
