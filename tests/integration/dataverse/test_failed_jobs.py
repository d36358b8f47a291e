"""Failed deliveries of async webhook steps as Dataverse records them: a System Job (`asyncoperation`) with
statuscode 31, the step as `_owningextensionid_value`, and the context it was to deliver in `data`, queryable over
the Web API with the reference's query (§1.3), so a receiver that was down can find and replay what it missed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devstack.dataverse.registration import register_webhook
from devstack.processes import free_port
from tests.fixtures.http_receiver import HttpReceiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(dataverse) -> Iterator[httpx.Client]:
    with dataverse.client() as client:
        yield client


def _jobs(api: httpx.Client, step_id: str, since: str) -> list[dict]:
    response = api.get("asyncoperations", params={
        "$filter": f"statuscode eq 31 and _owningextensionid_value eq {step_id} and completedon ge {since}",
        "$select": "asyncoperationid,name,statuscode,statecode,message,friendlymessage,errorcode,completedon,"
                   "messagename,primaryentitytype,data,_owningextensionid_value",
        "$orderby": "completedon asc"})
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_a_refused_connection_is_a_failed_job_holding_the_context(api, dataverse) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    dead = f"http://127.0.0.1:{free_port()}/api/dataverse/webhook"  # nothing listens: connection refused
    reg = register_webhook(api, dead, entity="account", message="Update",
                           images=[{"entityalias": "PostImage", "imagetype": 1, "attributes": "name,accountnumber"}])
    try:
        number = "FJ-" + uuid.uuid4().hex[:8]
        created = api.post("accounts", json={"name": "Down", "accountnumber": number,
                                             "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')"},
                           headers={"Prefer": "return=representation"})
        assert created.status_code == 201, created.text
        account_id = created.json()["accountid"]
        assert api.patch(f"accounts({account_id})", json={"name": "Changed while down"}).status_code == 204
        dataverse.drain()
        jobs = _jobs(api, reg.step_id, since)
    finally:
        reg.remove(api)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert (job["statuscode"], job["statecode"]) == (31, 3)
    assert job["_owningextensionid_value"] == reg.step_id
    assert job["messagename"] == "Update" and job["primaryentitytype"] == "account"
    assert job["message"] and job["friendlymessage"] and job["errorcode"] is not None
    context = json.loads(job["data"])  # the RemoteExecutionContext, as it would have been POSTed
    assert context["MessageName"] == "Update" and context["PrimaryEntityId"] == account_id
    assert context["OperationId"] == job["asyncoperationid"]  # the context's OperationId is its System Job
    target = {kv["key"]: kv["value"] for kv in context["InputParameters"]}["Target"]
    assert {kv["key"]: kv["value"] for kv in target["Attributes"]}["name"] == "Changed while down"
    assert {i["key"] for i in context["PostEntityImages"]} == {"PostImage"}


def test_a_delivered_job_keeps_no_body_and_an_answered_failure_does(api, dataverse, receiver: HttpReceiver) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    receiver.answer("/fj-ok", (200, 0))
    receiver.answer("/fj-500", (500, 0))
    ok = register_webhook(api, receiver.url("/fj-ok"), entity="msdyn_paymentterm", message="Update")
    bad = register_webhook(api, receiver.url("/fj-500"), entity="msdyn_paymentterm", message="Update")
    try:
        term = api.get("msdyn_paymentterms", params={"$top": "1", "$select": "msdyn_paymenttermid"}).json()
        term_id = term["value"][0]["msdyn_paymenttermid"]
        assert api.patch(f"msdyn_paymentterms({term_id})",
                         json={"msdyn_description": f"fj {time.time()}"}).status_code == 204
        dataverse.drain()
        succeeded = api.get("asyncoperations", params={
            "$filter": f"_owningextensionid_value eq {ok.step_id}", "$select": "statuscode,data"}).json()["value"]
        failed = _jobs(api, bad.step_id, since)
    finally:
        ok.remove(api)
        bad.remove(api)
    assert [(j["statuscode"], j["data"]) for j in succeeded] == [(30, None)]
    assert len(failed) == 1 and "500" in failed[0]["message"]
    assert json.loads(failed[0]["data"])["PrimaryEntityId"] == term_id
