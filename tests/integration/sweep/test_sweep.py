"""The sweep (core.sync.sweep) against the real parts: both simulators, Azurite for its checkpoints and the activity
log, the emulator's changes queue through the real SDK. Our webhook steps are registered (core.ops.deploy) on an
address where nothing listens, so every Dataverse change ends as a failed System Job, as while the app is down;
F&O changes are made without anyone told. The sweep finds both, queues them as ingest would (sessions, message
ids), records them in the activity log, and a second sweep finds nothing new."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.servicebus.aio import ServiceBusClient

from core.connectors.auth import LocalTokens
from core.connectors.dataverse import DataverseClient
from core.connectors.fno import FnoClient
from core.events.model import ChangeEvent
from core.maps import MapSet
from core.ops.deploy import FnoEvents, deploy
from core.ops.steps import OwnSteps
from core.store.activity import ActivityLog
from core.store.queues import ChangeQueue, QueuedChange
from core.store.sweeps import SweepStore
from core.store.tables import Tables
from core.sync.sweep import JOBS_SOURCE, Sweep, changes_source, fno_source
from devstack.processes import free_port
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.fixtures.servicebus import ServiceBusEmulator

pytestmark = pytest.mark.integration
MAPS = MapSet.load(["maps"])


class NoFno(FnoEvents):
    """F&O event activation is not what this test is about: every admin call succeeds, nothing registered."""

    def __init__(self) -> None:
        super().__init__(httpx.AsyncClient())

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return [] if method == "GET" else {}


@pytest.fixture(scope="module")
def dataverse() -> Iterator[DataverseSim]:
    sim = start_dataverse()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def fno() -> Iterator[FnoSimulator]:
    sim = start_fno("fno-sweep")
    try:
        yield sim
    finally:
        sim.process.stop()


class Recorder:
    """The real changes queue, remembering what was sent through it."""

    def __init__(self, queue: ChangeQueue) -> None:
        self.queue = queue
        self.sent: list[QueuedChange] = []

    async def send(self, changes: list[QueuedChange]) -> None:
        await self.queue.send(changes)
        self.sent += changes


class Parts:
    def __init__(self, dataverse: DataverseSim, fno: FnoSimulator, azurite: str, connection: str, queue: str) -> None:
        self.dv = DataverseClient(dataverse.url, LocalTokens())
        self.steps = OwnSteps(self.dv, entity_sets={m.dataverse.entity_set: m.dataverse.table for m in MAPS.values()})
        self.dv.write_headers = self.steps
        self.fo = FnoClient(fno.url, LocalTokens())
        self.tables = Tables(azurite, prefix="sw" + uuid.uuid4().hex[:8])
        self.queue = ChangeQueue(connection, queue)
        self.recorder = Recorder(self.queue)
        self.activity = ActivityLog(self.tables)
        self.connection, self.queue_name = connection, queue

    def sweep(self, **options: Any) -> Sweep:
        async def step_ids() -> list[str]:
            await self.steps.refresh()
            return sorted({i for ids in self.steps.ids().values() for i in ids})

        return Sweep(MAPS, SweepStore(self.tables), self.recorder, self.activity, dataverse=self.dv, fno=self.fo,
                     step_ids=step_ids, overlap=timedelta(seconds=2), **options)

    async def received(self) -> list[tuple[str, str, ChangeEvent]]:
        """The messages sent since the last call, read back from their sessions on the queue (and completed)."""
        sent, self.recorder.sent = self.recorder.sent, []
        found: list[tuple[str, str, ChangeEvent]] = []
        async with ServiceBusClient.from_connection_string(self.connection) as client:
            for session in sorted({change.session_id for change in sent}):
                async with client.get_queue_receiver(self.queue_name, session_id=session, max_wait_time=2) as receiver:
                    for message in await receiver.receive_messages(max_message_count=100, max_wait_time=2):
                        found.append((str(message.session_id), str(message.message_id),
                                      ChangeEvent.from_json(b"".join(message.body))))
                        await receiver.complete_message(message)
        assert sorted(m for _, m, _ in found) == sorted(c.message_id for c in sent)
        return found

    async def close(self) -> None:
        await self.dv.aclose()
        await self.fo.aclose()
        await self.queue.close()
        await self.tables.close()


@pytest.fixture
async def parts(dataverse: DataverseSim, fno: FnoSimulator, azurite: str,
                servicebus_emulator: ServiceBusEmulator) -> AsyncIterator[Parts]:
    made = Parts(dataverse, fno, azurite, servicebus_emulator.connection_string, servicebus_emulator.take("changes"))
    try:
        yield made
    finally:
        await made.close()


async def test_changes_made_while_down_are_found_queued_and_logged_once(parts: Parts, dataverse: DataverseSim,
                                                                         fno: FnoSimulator) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # the app's address, with nothing listening there
    report = await deploy(MAPS, dataverse=parts.dv, fno_admin=NoFno(), app_url=down, ingest_key="k")
    assert report.ok, report.to_json()
    sweep = parts.sweep()
    await asyncio.sleep(3.5)  # the seed's rows older than the overlap (2 s), so only this test's changes are found
    first = await sweep.run()  # the first sweep only sets the checkpoints
    assert sum(first.found.values()) == 0 and first.problems == []

    suffix = uuid.uuid4().hex[:6].upper()
    with dataverse.client() as api:
        company = api.get("cdm_companies", params={"$filter": "cdm_companycode eq 'usmf'"}).json()["value"][0]
        created = api.post("accounts", headers={"Prefer": "return=representation"}, json={
            "name": "Made while down", "accountnumber": f"SW-{suffix}",
            "msdyn_company@odata.bind": f"/cdm_companies({company['cdm_companyid']})"})
        assert created.status_code == 201, created.text
        account_id = created.json()["accountid"]
        assert api.patch(f"accounts({account_id})", json={"telephone1": "555 0100"}).status_code == 204
    dataverse.drain()
    async with httpx.AsyncClient(base_url=fno.data_url, headers=fno.headers(), timeout=30) as fo:
        renamed = await fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-002')",
                                 params={"cross-company": "true"}, json={"OrganizationName": f"Renamed {suffix}"})
        assert renamed.status_code == 204
        assert (await fo.post("CustomersV3", json={
            "dataAreaId": "usmf", "CustomerAccount": f"SW-{suffix}", "OrganizationName": "New while down",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD"})).status_code == 201

    second = await sweep.run()
    assert second.problems == []
    assert second.found[JOBS_SOURCE] == 2  # the Create and the Update of the account
    assert second.found[fno_source("CustomersV3")] == 2
    assert sum(second.found.values()) == 4
    messages = await parts.received()
    assert len(messages) == second.queued
    dv_events = [e for _, _, e in messages if e.source == "dataverse"]
    assert sorted(e.operation for e in dv_events) == ["create", "update"]
    assert {e.record_id for e in dv_events} == {account_id}
    assert all(e.event_id.startswith("dv:") and e.map == "customers" for e in dv_events)
    update = next(e for e in dv_events if e.operation == "update")
    assert update.values.get("telephone1") == "555 0100"  # the replayed body, with its images
    fno_events = {e.keys["CustomerAccount"]: e for _, _, e in messages if e.entity == "CustomersV3"}
    assert {"US-002", f"SW-{suffix}"} <= set(fno_events)
    assert fno_events["US-002"].keys["dataAreaId"] == "usmf" and fno_events["US-002"].company == "USMF"
    assert all(session.startswith(f"{e.map}|b") for session, _, e in messages)

    entries = await parts.activity.query(map="customers", limit=1000)
    swept = [e for e in entries if e.reason.startswith("sweep:")]
    assert len(swept) == len([m for m in messages if m[2].map == "customers"]) == 4
    assert {e.outcome for e in swept} == {"retrying"}
    assert {e.key for e in swept if e.source == "fno"} == {"USMF|US-002", f"USMF|SW-{suffix}"}
    assert all("failed System Job" in e.reason for e in swept if e.source == "dataverse")

    third = await sweep.run()  # nothing new: the overlap read again is not sent twice
    assert third.queued == 0 and sum(third.found.values()) == 0
    assert await parts.received() == []


async def test_a_side_that_does_not_answer_keeps_its_checkpoint(parts: Parts, fno: FnoSimulator) -> None:
    sweep = parts.sweep()
    await sweep.run()
    before = await SweepStore(parts.tables).get(fno_source("CustomersV3"))
    async with httpx.AsyncClient(base_url=fno.admin_url, timeout=10) as admin:
        (await admin.post("outage", json={"retryAfter": 1})).raise_for_status()
        try:
            report = await sweep.run()
        finally:
            (await admin.delete("outage")).raise_for_status()
    assert any(p.startswith("fno|CustomersV3") for p in report.problems)
    assert await SweepStore(parts.tables).get(fno_source("CustomersV3")) == before
    assert report.found.get(JOBS_SOURCE) == 0  # the other side was swept all the same


async def test_dataverse_change_tracking_finds_changes_and_deletes_since_the_last_token(
        parts: Parts, dataverse: DataverseSim) -> None:
    """SWEEP_DATAVERSE=changes: no webhook at all is needed; what changed since the stored delta link is read again
    (with its version, so a stale one is skipped) and a deleted row is deleted."""
    sweep = parts.sweep(dataverse_mode="changes", delta_http=parts.dv.http)
    first = await sweep.run()  # the initial read only keeps its delta link
    assert first.found[changes_source("account")] == 0 and first.problems == []
    assert JOBS_SOURCE not in first.found
    assert (await SweepStore(parts.tables).get(changes_source("account"))).token  # type: ignore[union-attr]
    with dataverse.client() as api:
        company = api.get("cdm_companies", params={"$filter": "cdm_companycode eq 'usmf'"}).json()["value"][0]
        bind = f"/cdm_companies({company['cdm_companyid']})"
        ids = []
        for name in ("tracked", "gone"):
            created = api.post("accounts", headers={"Prefer": "return=representation"}, json={
                "name": name, "accountnumber": f"CT-{uuid.uuid4().hex[:6]}", "msdyn_company@odata.bind": bind})
            assert created.status_code == 201, created.text
            ids.append(created.json()["accountid"])
        assert api.patch(f"accounts({ids[0]})", json={"telephone1": "555 0199"}).status_code == 204
        assert api.delete(f"accounts({ids[1]})").status_code == 204
    second = await sweep.run()
    assert second.problems == [] and second.found[changes_source("account")] == 2
    events = {(e.event.operation, e.event.record_id) for e in parts.recorder.sent if e.event.entity == "account"}
    assert events == {("refetch", ids[0]), ("delete", ids[1])}
    tracked = next(c.event for c in parts.recorder.sent if c.event.record_id == ids[0])
    assert tracked.version and int(tracked.version) > 0
    await parts.received()
    third = await sweep.run()
    assert third.found[changes_source("account")] == 0 and parts.recorder.sent == []
