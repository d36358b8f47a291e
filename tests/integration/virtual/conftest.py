"""One local Functions host serving the OData service over the demo sources: a fresh SQLite file, the session's
Azurite (Warehouses and the reverse id index) and the F&O simulator; plus a definition of the Warehouses table with a
small python_filter_limit, to see the refusal of what cannot be served."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from devstack.virtualdata import DEFINITIONS, create_sql, seed_tables
from tests.fixtures.devhost import RunningHost
from tests.fixtures.fno import FnoSimulator

KEY = "test-vt-key"
HEADER = {"x-vt-key": KEY}


@dataclass
class VirtualStack:
    host: RunningHost
    engine: sa.Engine
    tables: str  # Table Storage connection string
    fno: FnoSimulator

    @property
    def root(self) -> str:
        return f"{self.host.url}/api/odata/"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.root, headers=HEADER, timeout=30)

    def sql(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(sa.text(statement), params)]


@pytest.fixture(scope="session")
def vt(
    devhost: Callable[..., RunningHost], azurite: str, fno: FnoSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VirtualStack]:
    folder = tmp_path_factory.mktemp("vt")
    url = f"sqlite:///{folder / 'virtual.db'}"
    engine = create_sql(url, products=200, order_lines=120)
    asyncio.run(seed_tables(azurite))
    definitions = folder / "virtualtables"
    shutil.copytree(DEFINITIONS, definitions)
    strict = json.loads((DEFINITIONS / "warehouses.json").read_text())
    strict.update(entity_set="StrictWarehouses", entity_type="StrictWarehouse", python_filter_limit=3)
    (definitions / "strict-warehouses.json").write_text(json.dumps(strict))
    read_only = json.loads((DEFINITIONS / "products.json").read_text())
    read_only.update(entity_set="ReadOnlyProducts", entity_type="ReadOnlyProduct", operations=["read"])
    (definitions / "read-only-products.json").write_text(json.dumps(read_only))
    host = devhost(
        "tests.integration.virtual.app:app",
        TABLE_STORAGE_CONNECTION=azurite,
        FNO_URL=fno.url,
        VIRTUAL_TABLES_PATH=str(definitions),
        VIRTUAL_TABLES_KEY=KEY,
        VIRTUAL_TABLES_SQL_URL=url,
        VIRTUAL_TABLES_SQL_ECHO="true",
        DEPLOY_ON_START="false",
        SWEEP_ENABLED="false",
    )
    yield VirtualStack(host, engine, azurite, fno)
    engine.dispose()
