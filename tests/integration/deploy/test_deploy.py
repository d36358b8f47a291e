"""deploy() against both simulators, with a local stand-in answering 202 where the Function App would be."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from core.connectors.auth import LocalTokens
from core.connectors.dataverse import DataverseClient
from core.maps import MapSet, load_maps
from core.ops.deploy import (
    ENDPOINT_NAME,
    FNO_ENDPOINT_NAME,
    DeployReport,
    FnoEvents,
    deploy,
    deploy_fno,
    fno_plan,
)
from devstack.processes import free_port
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.fixtures.http_receiver import HttpReceiver

KEY = "first-ingest-key"
MAPS = MapSet.load(["maps"])

# The customers map's Dataverse columns that flow to F&O, its lookups' columns, its key and company, and
# its Dataverse filter's column (customertypecode).
ACCOUNT_ATTRIBUTES = ",".join(sorted([
    "accountnumber", "name", "creditlimit", "msdyn_creditlimitismandatory", "msdyn_onholdstatus",
    "address1_line1", "address1_city", "address1_postalcode", "address1_country", "emailaddress1",
    "telephone1", "description", "msdyn_customergroupid", "transactioncurrencyid", "msdyn_paymentterm",
    "primarycontactid", "msdyn_company", "customertypecode"]))


def run_deploy(dataverse: DataverseSim, fno: FnoSimulator, app_url: str, key: str, maps: MapSet = MAPS,
               ) -> DeployReport:
    async def go() -> DeployReport:
        async with DataverseClient(dataverse.url, LocalTokens()) as client, \
                httpx.AsyncClient(base_url=fno.url, timeout=30) as admin:
            return await deploy(maps, dataverse=client, fno_admin=admin, app_url=app_url, ingest_key=key,
                                activation_timeout=10)
    return asyncio.run(go())


def statuses(report: DeployReport, kind: str) -> dict[str, str]:
    return {item.name: item.status for item in report.items if item.kind == kind}


def rows(dataverse: DataverseSim, path: str, **params: str) -> list[dict[str, Any]]:
    with dataverse.client() as client:
        response = client.get(path, params=params)
        response.raise_for_status()
        return response.json()["value"]


def our_steps(dataverse: DataverseSim) -> dict[str, dict[str, Any]]:
    found = rows(dataverse, "sdkmessageprocessingsteps", **{"$filter": "startswith(name,'dw-oss')"})
    return {s["name"]: s for s in found}


def images_of(dataverse: DataverseSim, step_id: str) -> dict[str, dict[str, Any]]:
    found = rows(dataverse, "sdkmessageprocessingstepimages",
                 **{"$filter": f"_sdkmessageprocessingstepid_value eq {step_id}"})
    return {i["entityalias"]: i for i in found}


@pytest.fixture(scope="module")
def first(dataverse: DataverseSim, fno: FnoSimulator, app_stand_in: HttpReceiver) -> DeployReport:
    return run_deploy(dataverse, fno, app_stand_in.url(), KEY)


def test_first_deploy_registers_the_endpoint_steps_and_images(first: DeployReport, dataverse: DataverseSim) -> None:
    assert first.ok, first.to_json()
    assert statuses(first, "dataverse_endpoint") == {ENDPOINT_NAME: "created"}
    endpoints = rows(dataverse, "serviceendpoints", **{"$filter": f"name eq '{ENDPOINT_NAME}'"})
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert (endpoint["contract"], endpoint["authtype"], endpoint["isauthvalueset"]) == (8, 4, True)
    assert endpoint["url"].endswith("/api/dataverse/webhook")

    steps = our_steps(dataverse)
    for message in ("Create", "Update", "Delete"):
        step = steps[f"dw-oss: {message} of account"]
        assert (step["stage"], step["mode"], step["_eventhandler_value"]) == (40, 1, endpoint["serviceendpointid"])
        assert step["asyncautodelete"] is True
    update = steps["dw-oss: Update of account"]
    assert update["filteringattributes"] == ACCOUNT_ATTRIBUTES
    assert steps["dw-oss: Create of account"]["filteringattributes"] in (None, "")

    update_images = images_of(dataverse, update["sdkmessageprocessingstepid"])
    assert set(update_images) == {"PostImage"}
    post_image = update_images["PostImage"]
    assert (post_image["imagetype"], post_image["attributes"]) == (1, ACCOUNT_ATTRIBUTES)
    delete_images = images_of(dataverse, steps["dw-oss: Delete of account"]["sdkmessageprocessingstepid"])
    assert set(delete_images) == {"PreImage"}
    assert (delete_images["PreImage"]["imagetype"], delete_images["PreImage"]["attributes"]) == (
        0, "accountnumber,msdyn_company")
    assert images_of(dataverse, steps["dw-oss: Create of account"]["sdkmessageprocessingstepid"]) == {}

    # The polymorphic parent lookup of contacts is written through parentcustomerid_account, but the
    # step filters on its column, parentcustomerid (from the table's relationship metadata).
    contact_update = steps["dw-oss: Update of contact"]["filteringattributes"].split(",")
    assert "parentcustomerid" in contact_update
    assert "parentcustomerid_account" not in contact_update
    # Every enabled map sending to F&O has its three steps, once.
    tables = {m.dataverse.table for m in MAPS.values() if m.enabled}
    assert {name.rsplit(" of ", 1)[1] for name in steps} <= tables
    assert len(steps) == 3 * len({name.rsplit(" of ", 1)[1] for name in steps})


def test_first_deploy_activates_data_events_once(first: DeployReport, fno: FnoSimulator,
                                                 app_stand_in: HttpReceiver) -> None:
    wanted = fno_plan(MAPS)
    assert "CustomersV3.Update" in wanted
    assert statuses(first, "fno_activation") == dict.fromkeys(wanted, "created")
    activations = httpx.get(f"{fno.admin_url}activations").json()
    ours = [(a["eventId"], a["legalEntity"], a["active"]) for a in activations if a["endpoint"] == FNO_ENDPOINT_NAME]
    assert sorted(ours) == sorted((event, "", True) for event in wanted)
    endpoint = next(e for e in httpx.get(f"{fno.admin_url}endpoints").json() if e["name"] == FNO_ENDPOINT_NAME)
    assert endpoint["url"] == app_stand_in.url() + "/api/fno/events"
    # Each activation's test message reached the ingest route with the key header.
    tests = app_stand_in.at("/api/fno/events")
    assert len(tests) >= len(wanted)
    assert {c.headers.get("x-functions-key") for c in tests[: len(wanted)]} == {KEY}


def test_second_deploy_changes_nothing(first: DeployReport, dataverse: DataverseSim, fno: FnoSimulator,
                                       app_stand_in: HttpReceiver) -> None:
    steps_before = our_steps(dataverse)
    activations_before = httpx.get(f"{fno.admin_url}activations").json()
    again = run_deploy(dataverse, fno, app_stand_in.url(), KEY)
    assert again.ok, again.to_json()
    assert {item.status for item in again.items} == {"unchanged"}, again.to_json()
    assert len(again.items) == len(first.items)
    assert our_steps(dataverse) == steps_before
    assert httpx.get(f"{fno.admin_url}activations").json() == activations_before
    assert json.loads(json.dumps(again.to_json()))["counts"] == {"unchanged": len(again.items)}


def test_a_tampered_step_is_repaired(first: DeployReport, dataverse: DataverseSim, fno: FnoSimulator,
                                     app_stand_in: HttpReceiver) -> None:
    step = our_steps(dataverse)["dw-oss: Update of account"]
    image = images_of(dataverse, step["sdkmessageprocessingstepid"])["PostImage"]
    with dataverse.client() as client:
        client.patch(f"sdkmessageprocessingsteps({step['sdkmessageprocessingstepid']})",
                     json={"filteringattributes": "name"}).raise_for_status()
        client.patch(f"sdkmessageprocessingstepimages({image['sdkmessageprocessingstepimageid']})",
                     json={"attributes": "name"}).raise_for_status()
    report = run_deploy(dataverse, fno, app_stand_in.url(), KEY)
    assert statuses(report, "dataverse_step")["dw-oss: Update of account"] == "updated"
    assert statuses(report, "dataverse_image")["dw-oss: Update of account / PostImage"] == "updated"
    assert our_steps(dataverse)["dw-oss: Update of account"]["filteringattributes"] == ACCOUNT_ATTRIBUTES
    assert images_of(dataverse, step["sdkmessageprocessingstepid"])["PostImage"]["attributes"] == ACCOUNT_ATTRIBUTES


def test_a_changed_key_updates_the_endpoints_and_changes_fire_with_it(
        first: DeployReport, dataverse: DataverseSim, fno: FnoSimulator, app_stand_in: HttpReceiver) -> None:
    report = run_deploy(dataverse, fno, app_stand_in.url(), "second-ingest-key")
    assert statuses(report, "dataverse_endpoint") == {ENDPOINT_NAME: "updated"}
    assert "ingest key" in next(i.detail for i in report.items if i.kind == "dataverse_endpoint")
    assert statuses(report, "dataverse_step")["dw-oss: Update of account"] == "unchanged"

    # A Dataverse change now fires the webhook at the app URL, with the new key as ?code=.
    hooks_before = len(app_stand_in.at("/api/dataverse/webhook"))
    with dataverse.client() as client:
        account = client.get("accounts", params={"$filter": "accountnumber eq 'US-001'",
                                                 "$select": "accountid"}).json()["value"][0]
        renamed = client.patch(f"accounts({account['accountid']})", json={"name": "Renamed by the deploy test"})
        renamed.raise_for_status()
    dataverse.drain()
    hooks = app_stand_in.wait_for("/api/dataverse/webhook", hooks_before + 1)[hooks_before:]
    assert hooks, "no webhook reached the app URL"
    assert hooks[-1].query["code"] == ["second-ingest-key"]
    assert hooks[-1].headers["x-ms-dynamics-entity-name"] == "account"
    assert hooks[-1].headers["x-ms-dynamics-request-name"] == "Update"
    body = hooks[-1].body
    post_image = next(i["value"] for i in body["PostEntityImages"] if i["key"] == "PostImage")
    assert {a["key"] for a in post_image["Attributes"]} >= {"accountnumber", "name", "msdyn_company"}

    # An F&O change reaches the events route with the new key header too.
    events_before = len(app_stand_in.at("/api/fno/events"))
    response = httpx.patch(f"{fno.data_url}CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')",
                           json={"OrganizationName": "Renamed in F&O"}, headers=fno.headers())
    assert response.status_code == 204, response.text
    httpx.post(f"{fno.admin_url}drain", timeout=60)
    events = app_stand_in.wait_for("/api/fno/events", events_before + 1)[events_before:]
    assert events, "no F&O event reached the app URL"
    assert {e.headers["x-functions-key"] for e in events} == {"second-ingest-key"}


def test_activation_gives_up_with_a_report_when_the_app_never_answers() -> None:
    sim = start_fno("fno-deploy-unanswered")
    dead_url = f"http://127.0.0.1:{free_port()}"
    customers_only = MapSet([loaded for loaded in load_maps(["maps"]).maps if loaded.map.name == "customers"])
    try:
        async def go() -> DeployReport:
            report = DeployReport()
            async with httpx.AsyncClient(base_url=sim.url, timeout=30) as admin:
                await deploy_fno(customers_only, FnoEvents(admin), app_url=dead_url, ingest_key=KEY,
                                 report=report, activation_timeout=1.5)
            return report
        report = asyncio.run(go())
    finally:
        sim.process.stop()
    assert statuses(report, "fno_endpoint") == {FNO_ENDPOINT_NAME: "created"}
    failed = {i.name: i.detail for i in report.items if i.kind == "fno_activation"}
    assert set(failed) == {"CustomersV3.Create", "CustomersV3.Update", "CustomersV3.Delete"}
    assert all(i.status == "failed" for i in report.items if i.kind == "fno_activation")
    assert all("test message" in detail for detail in failed.values())
    assert not report.ok
