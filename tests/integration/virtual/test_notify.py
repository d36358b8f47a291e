"""External change notifications against the Dataverse simulator: rows changed in SQLite behind the service's back
are told to Dataverse as OnExternalUpdated / OnExternalCreated of their virtual table, whose webhook steps then
fire; each change is told once, and nothing from before the first poll."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.connectors.auth import LocalTokens
from core.connectors.dataverse import DataverseClient
from core.store.tables import Tables
from core.virtual.keys import MemoryKeyIndex
from core.virtual.model import VirtualTable
from core.virtual.notify import TableCheckpoints, WebApiEvents, tell_all
from core.virtual.service import KeyCheck, VirtualService
from core.virtual.sql import SqlSource
from devstack.dataverse.registration import register_webhook
from devstack.virtualdata import DEFINITIONS
from devstack.virtualtables import enable_events, register_definitions
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.devhost import RunningHost
from tests.fixtures.http_receiver import HttpReceiver, serve
from tests.integration.virtual.conftest import KEY, VirtualStack

pytestmark = pytest.mark.integration


def notified_products() -> VirtualTable:
    data = json.loads((DEFINITIONS / "products.json").read_text())
    data.update(entity_set="NotifiedProducts", entity_type="NotifiedProduct", notify={"changed_column": "ModifiedOn"})
    return VirtualTable.model_validate(data)


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    with serve(HttpReceiver()) as running:
        yield running


def stamp(moment: datetime) -> str:
    """ModifiedOn as the demo table stores it (SQLAlchemy's DateTime on SQLite: naive UTC text)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def test_changes_at_the_source_are_told_once(
    vt: VirtualStack, dataverse: DataverseSim, receiver: HttpReceiver, azurite: str
) -> None:
    table = notified_products()
    with dataverse.client() as api:
        sets = register_definitions(api, vt.root, KEY, [table])
        logical = f"dwvt_{table.entity_type}".lower()
        enable_events(api, logical, deleted=False)
        register_webhook(api, receiver.url("/vt-updated"), entity=logical, message="OnExternalUpdated")
    assert "NotifiedProducts" in sets

    service = VirtualService([table], lambda t: SqlSource(t, vt.engine, "products"), MemoryKeyIndex(), KeyCheck(KEY))
    client = DataverseClient(dataverse.url, LocalTokens())
    events = WebApiEvents(client.http)
    checkpoints = TableCheckpoints(Tables(azurite, prefix=f"t{uuid.uuid4().hex[:8]}"))

    async def poll() -> Any:
        [told] = await tell_all(service, events, checkpoints)
        return told

    async def scenario() -> tuple[Any, Any, Any]:
        try:
            first = await poll()  # sets the checkpoint: nothing from before is told
            later = datetime.now(UTC) + timedelta(days=3650)  # after every demo row, whatever the clock
            rows = vt.sql("SELECT product_id FROM products ORDER BY item_number LIMIT 2")
            for i, row in enumerate(rows):
                with vt.engine.begin() as connection:
                    connection.exec_driver_sql(
                        "UPDATE products SET name = ?, modified_on = ? WHERE product_id = ?",
                        (f"Changed outside {i}", stamp(later + timedelta(seconds=i)), row["product_id"]),
                    )
            second = await poll()
            third = await poll()
            return first, second, third
        finally:
            await client.aclose()

    first, second, third = asyncio.run(scenario())
    assert (first.updated, first.problem) == (0, None)
    assert (second.updated, second.problem) == (2, None)
    assert (third.updated, third.problem) == (0, None)
    dataverse.drain()
    delivered = receiver.wait_for("/vt-updated", 2)
    assert len(delivered) == 2
    changed = {
        str(uuid.UUID(hex=r["product_id"]))
        for r in vt.sql("SELECT product_id FROM products WHERE name LIKE 'Changed outside %'")
    }
    assert {d.body["PrimaryEntityId"] for d in delivered} == changed
    assert all(
        d.body["MessageName"] == "OnExternalUpdated" and d.body["PrimaryEntityName"] == logical for d in delivered
    )
    names = {
        a["value"]
        for d in delivered
        for a in d.body["InputParameters"][0]["value"]["Attributes"]
        if a["key"] == "dwvt_name"
    }
    assert names == {"Changed outside 0", "Changed outside 1"}


def test_the_timer_function_tells_through_the_host(
    vt: VirtualStack,
    dataverse: DataverseSim,
    receiver: HttpReceiver,
    azurite: str,
    devhost: Callable[..., RunningHost],
    tmp_path: Path,
) -> None:
    table = notified_products()
    (tmp_path / "notified-products.json").write_text(table.model_dump_json(by_alias=True, exclude_none=True))
    with dataverse.client() as api:
        register_definitions(api, vt.root, KEY, [table])
        logical = f"dwvt_{table.entity_type}".lower()
        enable_events(api, logical, deleted=False)
        register_webhook(api, receiver.url("/vt-host"), entity=logical, message="OnExternalUpdated")
    host = devhost(
        "tests.integration.virtual.app:app",
        TABLE_STORAGE_CONNECTION=azurite,
        DATAVERSE_URL=dataverse.url,
        VIRTUAL_TABLES_PATH=str(tmp_path),
        VIRTUAL_TABLES_KEY=KEY,
        VIRTUAL_TABLES_SQL_URL=str(vt.engine.url),
        DEPLOY_ON_START="false",
        SWEEP_ENABLED="false",
    )

    def tick() -> None:
        answer = httpx.post(
            f"{host.url}/admin/functions/vt_notify",
            json={"input": ""},
            headers={"x-functions-key": host.master_key},
            timeout=60,
        )
        assert answer.status_code == 202, host.log()[-2000:]

    tick()  # the first poll sets the checkpoint
    row = vt.sql("SELECT product_id FROM products ORDER BY item_number DESC LIMIT 1")[0]
    with vt.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE products SET name = 'Changed for the timer', modified_on = ? WHERE product_id = ?",
            (stamp(datetime.now(UTC) + timedelta(days=7300)), row["product_id"]),
        )
    tick()
    tick()  # nothing new: nothing told
    dataverse.drain()
    delivered = receiver.wait_for("/vt-host", 1)
    assert [d.body["PrimaryEntityId"] for d in delivered] == [str(uuid.UUID(hex=row["product_id"]))]
    assert "told Dataverse 0 created, 1 updated, 0 deleted" in host.log()


def test_a_soft_delete_is_told_as_deleted(
    vt: VirtualStack, dataverse: DataverseSim, receiver: HttpReceiver, azurite: str
) -> None:
    data = json.loads((DEFINITIONS / "products.json").read_text())
    data.update(
        entity_set="SoftProducts",
        entity_type="SoftProduct",
        notify={"changed_column": "ModifiedOn", "deleted_column": "Discontinued"},
    )
    table = VirtualTable.model_validate(data)
    with dataverse.client() as api:
        register_definitions(api, vt.root, KEY, [table])
        logical = "dwvt_softproduct"
        enable_events(api, logical)
        register_webhook(api, receiver.url("/vt-deleted"), entity=logical, message="OnExternalDeleted")
        register_webhook(api, receiver.url("/vt-soft-updated"), entity=logical, message="OnExternalUpdated")
    service = VirtualService([table], lambda t: SqlSource(t, vt.engine, "products"), MemoryKeyIndex(), KeyCheck(KEY))
    client = DataverseClient(dataverse.url, LocalTokens())
    checkpoints = TableCheckpoints(Tables(azurite, prefix=f"t{uuid.uuid4().hex[:8]}"))
    later = datetime.now(UTC) + timedelta(days=20000)
    gone, kept = vt.sql("SELECT product_id FROM products WHERE discontinued = 0 ORDER BY item_number LIMIT 2")

    async def scenario() -> Any:
        try:
            await tell_all(service, WebApiEvents(client.http), checkpoints)
            with vt.engine.begin() as connection:
                connection.exec_driver_sql(
                    "UPDATE products SET discontinued = 1, modified_on = ? WHERE product_id = ?",
                    (stamp(later), gone["product_id"]),
                )
                connection.exec_driver_sql(
                    "UPDATE products SET in_stock = 7, modified_on = ? WHERE product_id = ?",
                    (stamp(later + timedelta(seconds=1)), kept["product_id"]),
                )
            [told] = await tell_all(service, WebApiEvents(client.http), checkpoints)
            return told
        finally:
            await client.aclose()

    told = asyncio.run(scenario())
    assert (told.deleted, told.updated, told.problem) == (1, 1, None)
    dataverse.drain()
    [deleted] = receiver.wait_for("/vt-deleted", 1)
    [updated] = receiver.wait_for("/vt-soft-updated", 1)
    assert deleted.body["MessageName"] == "OnExternalDeleted"
    assert deleted.body["PrimaryEntityId"] == str(uuid.UUID(hex=gone["product_id"]))
    assert updated.body["PrimaryEntityId"] == str(uuid.UUID(hex=kept["product_id"]))
