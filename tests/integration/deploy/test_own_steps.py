"""The engine's own Dataverse writes skip our webhook steps (core.ops.steps, reference §2.9): against the real
Dataverse simulator with the steps deploy() registers pointing at a recording receiver, a write through a
DataverseClient with OwnSteps fires none of them, the same write without the header fires them, and a
webhook step of someone else still fires for the engine's write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.connectors.auth import LocalTokens
from core.connectors.dataverse import DataverseClient
from core.maps import MapSet
from core.ops.deploy import FnoEvents, deploy
from core.ops.steps import HEADER, OwnSteps
from devstack.dataverse.registration import register_webhook
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.http_receiver import HttpReceiver, serve

pytestmark = pytest.mark.integration
MAPS = MapSet.load(["maps"])
HOOK = "/api/dataverse/webhook"
THEIRS = "/contoso/audit"


class NoFno(FnoEvents):
    """F&O is not part of this test: every admin call succeeds with nothing registered."""

    def __init__(self) -> None:
        super().__init__(httpx.AsyncClient())

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return [] if method == "GET" else {}


@pytest.fixture(scope="module")
def dataverse() -> Iterator[DataverseSim]:
    """A simulator of this module's own: the steps registered here must not fire for other tests."""
    sim = start_dataverse()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def app() -> Iterator[HttpReceiver]:
    with serve(HttpReceiver(default=(202, 0.0))) as running:
        yield running


def hooks_for(app: HttpReceiver, row_id: str, path: str = HOOK) -> list[tuple[str, str]]:
    """(message, table) of each webhook that reached `path` for the row."""
    return [(r.headers["x-ms-dynamics-request-name"], r.headers["x-ms-dynamics-entity-name"])
            for r in app.at(path) if r.body.get("PrimaryEntityId") == row_id]


def account_body(number: str, company_id: str) -> dict[str, Any]:
    return {"name": "Engine write", "accountnumber": number, "customertypecode": 3,
            "msdyn_company@odata.bind": f"/cdm_companies({company_id})"}


def test_engine_writes_fire_none_of_our_steps_and_other_writes_do(dataverse: DataverseSim,
                                                                   app: HttpReceiver) -> None:
    with dataverse.client() as api:
        company = api.get("cdm_companies", params={"$filter": "cdm_companycode eq 'usmf'"}).json()["value"][0]
        company_id = company["cdm_companyid"]
        # Someone else's webhook on account Update: the bypass must leave it alone.
        theirs = register_webhook(api, app.url(THEIRS), entity="account", message="Update")
        api.patch(f"sdkmessageprocessingsteps({theirs.step_id})",
                  json={"name": "Contoso audit: Update of account"}).raise_for_status()

    async def engine() -> tuple[OwnSteps, dict[str, str], list[str]]:
        async with DataverseClient(dataverse.url, LocalTokens()) as client:
            steps = OwnSteps(client, entity_sets={m.dataverse.entity_set: m.dataverse.table for m in MAPS.values()})
            client.write_headers = steps
            report = await deploy(MAPS, dataverse=client, fno_admin=NoFno(), app_url=app.url(), ingest_key="k")
            assert report.ok, report.to_json()
            # deploy() refreshed the ids after registering: known before any engine write of a mapped table.
            lookups_after_deploy = steps.lookups
            known = steps.ids()
            assert {("account", m) for m in ("Create", "Update", "Delete")} <= set(known)
            sent = {
                "create": dict(await steps.for_write("accounts", "create")),
                "upsert": dict(await steps.for_write("accounts", "upsert")),
            }
            created = await client.create("accounts", account_body(f"E-{uuid.uuid4().hex[:8]}", company_id))
            await client.update("accounts", created, {"name": "Engine update"})
            number = f"E-{uuid.uuid4().hex[:8]}"
            upserted = await client.upsert("accounts", {"accountnumber": number,
                                                        "_msdyn_company_value": company_id},
                                           {"name": "Engine upsert", "customertypecode": 3,
                                            "msdyn_company@odata.bind": f"/cdm_companies({company_id})"})
            await client.upsert("accounts", {"accountnumber": number, "_msdyn_company_value": company_id},
                                {"name": "Engine upsert again"})
            assert await client.delete("accounts", upserted.id)
            assert steps.lookups == lookups_after_deploy  # no lookup per write
            return steps, sent, [created, upserted.id]

    steps, sent, (created, upserted) = asyncio.run(engine())
    ids = steps.ids()
    assert sent["create"] == {HEADER: ",".join(ids[("account", "Create")])}
    assert sorted(sent["upsert"][HEADER].split(",")) == sorted(ids[("account", "Create")] + ids[("account", "Update")])
    dataverse.drain()
    # Our steps fired for none of the engine's writes (create, update, upsert-create, upsert-update, delete) ...
    assert hooks_for(app, created) == []
    assert hooks_for(app, upserted) == []
    # ... while someone else's step on account Update still ran for the engine's update.
    assert app.wait_for(THEIRS, 1) and hooks_for(app, created, THEIRS) == [("Update", "account")]

    # The same kind of writes without the header (a user, a flow) reach the ingest route.
    with dataverse.client() as api:
        api.patch(f"accounts({created})", json={"name": "User update"}).raise_for_status()
        response = api.post("accounts", json=account_body(f"U-{uuid.uuid4().hex[:8]}", company_id))
        assert response.status_code == 204, response.text
        user_created = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        api.delete(f"accounts({user_created})").raise_for_status()
    dataverse.drain()
    assert hooks_for(app, created) == [("Update", "account")]
    # Asynchronous steps: Dataverse does not promise the Create's webhook before the Delete's.
    assert sorted(hooks_for(app, user_created)) == [("Create", "account"), ("Delete", "account")]


def test_a_write_without_our_steps_known_still_succeeds(dataverse: DataverseSim) -> None:
    """The step lookup failing (here: a client whose lookup is refused) costs the header, never the write."""

    class Refusing:
        async def query(self, entity_set: str, **kwargs: Any) -> list[dict[str, Any]]:
            raise httpx.ConnectError("Dataverse unreachable for the lookup")

    async def write() -> str:
        async with DataverseClient(dataverse.url, LocalTokens()) as client:
            client.write_headers = OwnSteps(Refusing(), entity_sets={"accounts": "account"})
            with dataverse.client() as api:
                company_id = api.get("cdm_companies", params={"$filter": "cdm_companycode eq 'usmf'"}
                                     ).json()["value"][0]["cdm_companyid"]
            return await client.create("accounts", account_body(f"F-{uuid.uuid4().hex[:8]}", company_id))

    assert uuid.UUID(asyncio.run(write()))
