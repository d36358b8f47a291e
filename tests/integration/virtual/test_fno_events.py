"""F&O events told to Dataverse for a virtual table over the real local stack: a local host (ingest, OData service,
the vt_fno_events timer) on Azurite and the Service Bus emulator, the F&O simulator as the table's source and the
Dataverse simulator, whose webhook steps on OnExternalCreated / OnExternalUpdated / OnExternalDeleted must fire with
the id the OData service hands out. An event of an entity behind no virtual table is left alone; a call Dataverse
refuses goes to the error log (the admin API shows it) without holding back the table's later events, and once
resubmitted there it is back in the outbox and told at the next run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from core.store.tables import Tables
from core.virtual.events import OUTBOX
from core.virtual.keys import id_of
from core.virtual.model import VirtualTable
from devstack.dataverse.registration import register_webhook
from devstack.virtualdata import DEFINITIONS
from devstack.virtualtables import enable_events, register_definitions
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.devhost import RunningHost
from tests.fixtures.http_receiver import HttpReceiver, serve
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.virtual.conftest import KEY, VirtualStack

pytestmark = pytest.mark.integration
ENTITY = "mserp_custcustomergroupentity"
START = datetime(2026, 1, 1, tzinfo=UTC)


def data_event(
    message: str, company: str, group: str, step: int, *, entity: str = ENTITY, key: str = "customergroupid"
) -> dict[str, Any]:
    attributes = [{"key": "mserp_dataareaid", "value": company}, {"key": f"mserp_{key}", "value": group}]
    contracts = "http://schemas.microsoft.com/xrm/2011/Contracts"
    target: dict[str, Any] = (
        {
            "__type": f"EntityReference:{contracts}",
            "Id": str(uuid.uuid4()),
            "KeyAttributes": attributes,
            "LogicalName": entity,
        }
        if message == "Delete"
        else {"__type": f"Entity:{contracts}", "Attributes": attributes, "LogicalName": entity}
    )
    ms = int((START + timedelta(seconds=step)).timestamp() * 1000)
    return {
        "MessageName": message,
        "PrimaryEntityName": entity,
        "OperationId": str(uuid.uuid4()),
        "OperationCreatedOn": f"/Date({ms}+0000)/",
        "InputParameters": [{"key": "Target", "value": target}],
    }


async def outbox_rows(azurite: str, **equal: str) -> list[dict[str, Any]]:
    tables = Tables(azurite)
    try:
        client = await tables.table(OUTBOX)
        query = " and ".join(f"{k} eq '{v}'" for k, v in equal.items())
        return [dict(e) async for e in client.query_entities(query)]
    finally:
        await tables.close()


def test_fno_events_fire_the_virtual_tables_steps_and_a_refusal_goes_to_the_error_log(
    vt: VirtualStack,
    dataverse: DataverseSim,
    azurite: str,
    servicebus_emulator: ServiceBusEmulator,
    devhost: Callable[..., RunningHost],
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    data = json.loads((DEFINITIONS / "fno-customer-groups.json").read_text())
    assert data["notify"] == {"fno_events": True}  # shipped so
    data.update(entity_set=f"EvGroups{suffix}", entity_type=f"EvGroup{suffix}")
    table = VirtualTable.model_validate(data)
    (tmp_path / "groups.json").write_text(json.dumps(data))
    changes, fno_queue = servicebus_emulator.take("changes"), servicebus_emulator.take("plain")
    host = devhost(
        "tests.integration.virtual.events_app:app",
        SERVICEBUS_CONNECTION=servicebus_emulator.connection_string,
        TABLE_STORAGE_CONNECTION=azurite,
        CHANGES_QUEUE=changes,
        FNO_EVENTS_QUEUE=fno_queue,
        DATAVERSE_URL=dataverse.url,
        FNO_URL=vt.fno.url,
        VIRTUAL_TABLES_PATH=str(tmp_path),
        VIRTUAL_TABLES_KEY=KEY,
        DEPLOY_ON_START="false",
        SWEEP_ENABLED="false",
    )
    logical = f"dwvt_{table.entity_type}".lower()
    with serve(HttpReceiver()) as receiver:
        with dataverse.client() as api:
            register_definitions(api, f"{host.url}/api/odata/", KEY, [table])
            enable_events(api, logical, deleted=False)  # OnExternalDeleted refused until turned on below
            for message in ("OnExternalCreated", "OnExternalUpdated", "OnExternalDeleted"):
                register_webhook(api, receiver.url(f"/{message}"), entity=logical, message=message)

        # F&O changes: a group created, an existing one updated, the new one deleted
        fno = httpx.Client(base_url=vt.fno.data_url, headers=vt.fno.headers(), timeout=30)
        existing = fno.get(
            "CustomerGroups", params={"cross-company": "true", "$top": "1", "$filter": "dataAreaId eq 'usmf'"}
        ).json()["value"][0]
        group = existing["CustomerGroupId"]
        new = f"E{suffix[:5]}"
        created = fno.post(
            "CustomerGroups",
            json={"dataAreaId": "usmf", "CustomerGroupId": new, "Description": "Made in F&O", "PaymentTermId": "Net30"},
        )
        assert created.status_code in (200, 201), created.text
        path = f"CustomerGroups(dataAreaId='usmf',CustomerGroupId='{group}')"
        patched = fno.patch(path, params={"cross-company": "true"}, json={"Description": f"Changed in F&O {suffix}"})
        assert patched.status_code in (200, 204), patched.text

        other = data_event("Update", "usmf", "US-001", 0, entity="mserp_custcustomerv3entity", key="customeraccount")
        post = httpx.post(
            f"{host.url}/api/fno/events",
            headers={"x-functions-key": host.function_key},
            timeout=60,
            json=[data_event("Create", "usmf", new, 1), other],
        )
        assert post.status_code == 202 and post.json()["accepted"] == 2, post.text
        bus = ServiceBusClient.from_connection_string(servicebus_emulator.connection_string)
        with bus, bus.get_queue_sender(fno_queue) as sender:  # the Service Bus-fed path
            sender.send_messages(ServiceBusMessage(json.dumps(data_event("Update", "usmf", group, 2))))
        deleted = fno.delete(
            f"CustomerGroups(dataAreaId='usmf',CustomerGroupId='{new}')", params={"cross-company": "true"}
        )
        assert deleted.status_code in (200, 204), deleted.text
        post = httpx.post(
            f"{host.url}/api/fno/events",
            headers={"x-functions-key": host.function_key},
            timeout=60,
            json=data_event("Delete", "usmf", new, 3),
        )
        assert post.status_code == 202 and post.json() == {"accepted": 1, "skipped": []}, post.text
        post = httpx.post(  # after the delete Dataverse will refuse: told all the same
            f"{host.url}/api/fno/events",
            headers={"x-functions-key": host.function_key},
            timeout=60,
            json=data_event("Update", "usmf", group, 4),
        )
        assert post.status_code == 202, post.text

        deadline = time.monotonic() + 60
        while len(rows := asyncio.run(outbox_rows(azurite, PartitionKey=table.entity_set))) < 4:
            assert time.monotonic() < deadline, (rows, host.log()[-3000:])
            time.sleep(0.5)
        assert asyncio.run(outbox_rows(azurite, EventId="fno:" + other["OperationId"])) == []  # left alone

        def tick() -> None:
            answer = httpx.post(
                f"{host.url}/admin/functions/vt_fno_events",
                json={"input": ""},
                headers={"x-functions-key": host.master_key},
                timeout=60,
            )
            assert answer.status_code == 202, host.log()[-2000:]

        new_id = str(id_of(table, {"dataAreaId": "usmf", "CustomerGroupId": new}))
        group_id = str(id_of(table, {"dataAreaId": "usmf", "CustomerGroupId": group}))
        tick()
        dataverse.drain()
        [made] = receiver.wait_for("/OnExternalCreated", 1)
        updates = receiver.wait_for("/OnExternalUpdated", 2)  # before and after the refused delete
        assert [u.body["PrimaryEntityId"] for u in updates] == [group_id, group_id], updates
        updated = updates[0]
        assert (made.body["PrimaryEntityId"], made.body["PrimaryEntityName"]) == (new_id, logical)

        def attribute(delivery: Any, name: str) -> Any:
            found = delivery.body["InputParameters"][0]["value"]["Attributes"]
            return next(a["value"] for a in found if a["key"] == name)

        # the new group was deleted in F&O before the run: told with the keys its event carried, no description
        names = {a["key"] for a in made.body["InputParameters"][0]["value"]["Attributes"]}
        assert attribute(made, "dwvt_customergroupid") == new and "dwvt_description" not in names, names
        assert attribute(updated, "dwvt_description") == f"Changed in F&O {suffix}"  # read from F&O
        # the delete, refused (OnExternalDeleted not enabled: a 400), is in the error log; the update after it was told
        admin = {"x-functions-key": host.master_key}
        deadline = time.monotonic() + 30
        while True:
            listed = httpx.get(f"{host.url}/api/manage/v1/errors", params={"map": f"vt:{table.entity_set}"},
                               headers=admin, timeout=30)
            assert listed.status_code == 200, listed.text
            if listed.json()["errors"]:
                break
            assert time.monotonic() < deadline, host.log()[-3000:]
            time.sleep(0.5)
        [summary] = listed.json()["errors"]
        entry = httpx.get(f"{host.url}/api/manage/v1/errors/{summary['id']}", headers=admin, timeout=30).json()
        assert (entry["operation"], entry["status"], entry["category"], entry["target_status"]) == (
            "vt_notify", "open", "application", 400), entry
        assert entry["id"].startswith(f"vtevents:{table.entity_set}|") and new_id in entry["text"], entry
        assert "is not enabled for the virtual table" in entry["text"] and json.loads(entry["key"]) == {
            "dataAreaId": "usmf", "CustomerGroupId": new}
        assert len(receiver.wait_for("/OnExternalUpdated", 2)) == 2
        assert asyncio.run(outbox_rows(azurite, PartitionKey=table.entity_set)) == []

        with dataverse.client() as api:
            enable_events(api, logical, deleted=True)
        resubmitted = httpx.post(f"{host.url}/api/manage/v1/errors/{entry['id']}/resubmit", headers=admin, timeout=30)
        assert resubmitted.status_code == 202, resubmitted.text
        [back] = asyncio.run(outbox_rows(azurite, PartitionKey=table.entity_set))
        assert (back["Action"], back["Id"], back["Attempts"]) == ("OnExternalDeleted", new_id, 0)
        tick()
        dataverse.drain()
        [gone] = receiver.wait_for("/OnExternalDeleted", 1)
        assert (gone.body["PrimaryEntityId"], gone.body["MessageName"]) == (new_id, "OnExternalDeleted")
        assert asyncio.run(outbox_rows(azurite, PartitionKey=table.entity_set)) == []
        assert len(receiver.wait_for("/OnExternalUpdated", 2)) == 2  # each told once
        status = httpx.get(f"{host.url}/api/manage/v1/errors/{entry['id']}", headers=admin, timeout=30).json()
        assert status["status"] == "resubmitted", status
        fno.close()
