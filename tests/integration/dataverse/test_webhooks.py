"""Webhook steps registered through the Web API and delivered to a local receiver: body shape against
the reference examples (§1.7.1, §1.7.2, §1.7.3), headers and auth (§1.2, §1.4), the retry rule and
System Jobs (§1.5), sync rollback and timeout, trimming over 256 KB (§1.6)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from devstack.dataverse.registration import RegistrationError, main, register_webhook
from devstack.dataverse.seed import seed_id
from tests.fixtures.dataverse import start_dataverse
from tests.fixtures.http_receiver import HttpReceiver

pytestmark = pytest.mark.integration
OID = "d2069f4e-58c0-4db3-9a3c-ddada13285f2"
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
# Top-level properties of the reference's account Update example (§1.7.1).
EXAMPLE_KEYS = {
    "BusinessUnitId", "CorrelationId", "Depth", "InitiatingUserAzureActiveDirectoryObjectId", "InitiatingUserId",
    "InputParameters", "IsExecutingOffline", "IsInTransaction", "IsOfflinePlayback", "IsolationMode", "MessageName",
    "Mode", "OperationCreatedOn", "OperationId", "OrganizationId", "OrganizationName", "OutputParameters",
    "OwningExtension", "ParentContext", "PostEntityImages", "PreEntityImages", "PrimaryEntityId",
    "PrimaryEntityName", "RequestId", "SecondaryEntityName", "SharedVariables", "Stage",
    "UserAzureActiveDirectoryObjectId", "UserId",
}
ENTITY_KEYS = {"Attributes", "EntityState", "FormattedValues", "Id", "KeyAttributes", "LogicalName",
               "RelatedEntities", "RowVersion"}
TRIMMED = {"ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"}


@pytest.fixture(scope="module")
def api(dataverse) -> Iterator[httpx.Client]:
    with dataverse.client(oid=OID) as client:
        yield client


def kv(items: list[dict]) -> dict:
    assert all(set(i) == {"key", "value"} for i in items), items
    return {i["key"]: i["value"] for i in items}


def new_account(api: httpx.Client, **values) -> dict:
    body = {"name": "Webhook test", "accountnumber": "W-" + uuid.uuid4().hex[:8], "creditlimit": 10000,
            "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')", **values}
    r = api.post("accounts", json=body, headers={"Prefer": "return=representation"})
    assert r.status_code == 201, r.text
    return r.json()


def test_async_update_body_matches_the_reference_example(api, dataverse, receiver: HttpReceiver):
    account = new_account(api)
    reg = register_webhook(api, receiver.url("/update"), entity="account", message="Update",
                           filtering="name,creditlimit", images=[
                               {"entityalias": "PreImage", "imagetype": 0,
                                "attributes": "name,accountnumber,creditlimit,msdyn_company"},
                               {"entityalias": "PostImage", "imagetype": 1}])
    try:
        me = api.get("WhoAmI").json()["UserId"]
        r = api.patch(f"accounts({account['accountid']})", json={"name": "Renamed", "creditlimit": 25000.5},
                      headers={"x-ms-correlation-request-id": "b374239d-4233-41a9-8b17-a86cb4f737b5"})
        assert r.status_code == 204
        api.patch(f"accounts({account['accountid']})", json={"telephone1": "filtered out"})
        dataverse.drain()
        got = receiver.wait_for("/update", 1)
    finally:
        reg.remove(api)
    assert len(got) == 1  # the telephone1-only update does not pass filteringattributes
    request = got[0]
    assert request.query == {"code": ["test-key"]}
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["x-ms-dynamics-organization"] == "contoso.crm.dynamics.com"
    assert headers["x-ms-dynamics-entity-name"] == "account"
    assert headers["x-ms-dynamics-request-name"] == "Update"
    assert headers["x-ms-correlation-request-id"] == "b374239d-4233-41a9-8b17-a86cb4f737b5"
    assert uuid.UUID(headers["x-request-id"])
    assert "x-ms-dynamics-msg-size-exceeded" not in headers
    raw = request.raw.decode()
    assert f'"__type":"Money:{CONTRACTS}"'.replace("/", "\\/") in raw and "\\/Date(" in raw

    body = request.body
    assert set(body) == EXAMPLE_KEYS
    assert body["MessageName"] == "Update" and body["Mode"] == 1 and body["Stage"] == 40 and body["Depth"] == 1
    assert body["PrimaryEntityName"] == "account" and body["PrimaryEntityId"] == account["accountid"]
    assert body["UserId"] == body["InitiatingUserId"] == me
    assert body["UserAzureActiveDirectoryObjectId"] == body["InitiatingUserAzureActiveDirectoryObjectId"] == OID
    assert body["CorrelationId"] == "b374239d-4233-41a9-8b17-a86cb4f737b5"
    assert body["OwningExtension"]["Id"] == reg.step_id
    assert body["OwningExtension"]["LogicalName"] == "sdkmessageprocessingstep"
    assert re.fullmatch(r"/Date\(\d{13}\+0000\)/", body["OperationCreatedOn"])
    assert body["SecondaryEntityName"] == "none" and body["IsolationMode"] == 1 and body["IsInTransaction"] is False
    assert body["OrganizationName"] == "contoso"

    target = kv(body["InputParameters"])["Target"]
    assert target["__type"] == f"Entity:{CONTRACTS}" and set(target) == ENTITY_KEYS | {"__type"}
    attrs = kv(target["Attributes"])
    # Only the changed columns plus the primary key and the system-set columns.
    assert set(attrs) == {"accountid", "name", "creditlimit", "modifiedon", "modifiedby", "modifiedonbehalfby"}
    assert attrs["name"] == "Renamed"
    assert attrs["creditlimit"] == {"__type": f"Money:{CONTRACTS}", "Value": 25000.5}
    assert re.fullmatch(r"/Date\(\d{13}\)/", attrs["modifiedon"])
    assert attrs["modifiedby"] == {"__type": f"EntityReference:{CONTRACTS}", "Id": me, "KeyAttributes": [],
                                   "LogicalName": "systemuser", "Name": None, "RowVersion": None}
    assert attrs["modifiedonbehalfby"] is None

    pre = kv(body["PreEntityImages"])["PreImage"]
    post = kv(body["PostEntityImages"])["PostImage"]
    assert "__type" not in pre and set(pre) == ENTITY_KEYS
    pre_attrs, post_attrs = kv(pre["Attributes"]), kv(post["Attributes"])
    assert set(pre_attrs) == {"accountid", "name", "accountnumber", "creditlimit", "msdyn_company"}
    assert pre_attrs["name"] == "Webhook test" and pre_attrs["creditlimit"]["Value"] == 10000
    assert post_attrs["name"] == "Renamed" and post_attrs["accountnumber"] == account["accountnumber"]
    company = post_attrs["msdyn_company"]
    assert company["__type"] == f"EntityReference:{CONTRACTS}" and company["LogicalName"] == "cdm_company"
    assert company["Id"] == seed_id("cdm_company", "usmf") and company["Name"] == "Contoso Entertainment System USA"
    assert post_attrs["statecode"] == {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 0}
    assert int(post["RowVersion"]) > int(pre["RowVersion"])
    assert kv(post["FormattedValues"])["creditlimit"] == "$25,000.50"

    parent = body["ParentContext"]
    assert parent["Stage"] == 30 and parent["ParentContext"] is None
    assert kv(parent["SharedVariables"])["IsAutoTransact"] is True
    assert kv(parent["InputParameters"])["SuppressDuplicateDetection"] is False


def test_async_delete_carries_an_entity_reference_target_and_the_pre_image(api, dataverse, receiver: HttpReceiver):
    account = new_account(api)
    reg = register_webhook(api, receiver.url("/delete"), entity="account", message="Delete", images=[
        {"entityalias": "PreImage", "imagetype": 0, "attributes": "accountnumber,msdyn_company"}])
    try:
        assert api.delete(f"accounts({account['accountid']})").status_code == 204
        dataverse.drain()
        got = receiver.wait_for("/delete", 1)
    finally:
        reg.remove(api)
    body = got[0].body
    assert body["MessageName"] == "Delete" and body["PostEntityImages"] == []
    assert kv(body["InputParameters"])["Target"] == {
        "__type": f"EntityReference:{CONTRACTS}", "Id": account["accountid"], "KeyAttributes": [],
        "LogicalName": "account", "Name": None, "RowVersion": None,
    }
    pre = kv(kv(body["PreEntityImages"])["PreImage"]["Attributes"])
    assert pre["accountnumber"] == account["accountnumber"]
    assert pre["msdyn_company"]["Id"] == seed_id("cdm_company", "usmf")


def test_async_create_carries_the_new_id_and_the_primary_name_image(api, dataverse, receiver: HttpReceiver):
    reg = register_webhook(api, receiver.url("/create"), entity="account", message="Create")
    try:
        account = new_account(api, customertypecode=3)
        dataverse.drain()
        got = receiver.wait_for("/create", 1)
    finally:
        reg.remove(api)
    body = got[0].body
    assert body["MessageName"] == "Create" and body["PreEntityImages"] == []
    assert kv(body["OutputParameters"]) == {"id": account["accountid"]}
    attrs = kv(kv(body["InputParameters"])["Target"]["Attributes"])
    assert attrs["customertypecode"] == {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 3}
    assert attrs["createdby"]["LogicalName"] == "systemuser"
    image = kv(body["PostEntityImages"])["AsynchronousStepPrimaryName"]
    assert kv(image["Attributes"]) == {"name": "Webhook test", "accountid": account["accountid"]}


def test_async_retry_only_once_and_only_on_502_503_504(api, dataverse, receiver: HttpReceiver):
    receiver.answer("/retry-503", (503, 0), (200, 0))
    receiver.answer("/no-retry-500", (500, 0))
    receiver.answer("/retry-502", (502, 0))
    regs = [register_webhook(api, receiver.url(path), entity="msdyn_paymentterm", message="Update")
            for path in ("/retry-503", "/no-retry-500", "/retry-502")]
    try:
        term = seed_id("msdyn_paymentterm", "demf", "Net45")
        assert api.patch(f"msdyn_paymentterms({term})", json={"msdyn_description": "retry"}).status_code == 204
        dataverse.drain()
        jobs = {
            reg.step_id: api.get("asyncoperations", params={
                "$filter": f"_owningextensionid_value eq {reg.step_id}",
                "$select": "name,statuscode,statecode,message,friendlymessage,errorcode,completedon",
            }).json()["value"] for reg in regs
        }
    finally:
        for reg in regs:
            reg.remove(api)
    assert len(receiver.at("/retry-503")) == 2
    assert len(receiver.at("/no-retry-500")) == 1
    assert len(receiver.at("/retry-502")) == 2
    succeeded, failed_500, failed_502 = (jobs[r.step_id] for r in regs)
    assert [j["statuscode"] for j in succeeded] == [30]
    assert [(j["statuscode"], j["statecode"]) for j in failed_500] == [(31, 3)]
    assert "500" in failed_500[0]["message"] and failed_500[0]["completedon"].endswith("Z")
    assert [j["statuscode"] for j in failed_502] == [31] and "502" in failed_502[0]["message"]
    documented = api.get("asyncoperations", params={
        "$orderby": "completedon desc", "$select": "name,friendlymessage,errorcode,message,completedon",
        "$filter": f"statuscode eq 31 and _owningextensionid_value eq {regs[1].step_id}"})
    assert len(documented.json()["value"]) == 1


def test_sync_failure_fails_the_request_and_rolls_back(api, receiver: HttpReceiver):
    receiver.answer("/sync-fail", (500, 0))
    group = seed_id("msdyn_customergroup", "usmf", "90")
    before = api.get(f"msdyn_customergroups({group})").json()
    reg = register_webhook(api, receiver.url("/sync-fail"), entity="msdyn_customergroup", message="Update",
                           mode=0, stage=40)
    try:
        r = api.patch(f"msdyn_customergroups({group})", json={"msdyn_description": "never committed"})
    finally:
        reg.remove(api)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80040265"
    assert r.json()["error"]["message"].startswith("Endpoint unavailable")
    after = api.get(f"msdyn_customergroups({group})").json()
    assert after["msdyn_description"] == before["msdyn_description"]
    assert after["@odata.etag"] == before["@odata.etag"]
    # The request went out before the rollback: a sync receiver can see uncommitted changes (§1.5).
    sent = receiver.at("/sync-fail")
    assert len(sent) == 1 and sent[0].body["Mode"] == 0 and sent[0].body["IsInTransaction"] is True


def test_sync_timeout_fails_the_request_and_a_created_row_is_not_kept(receiver: HttpReceiver):
    receiver.answer("/sync-slow", (200, 3.0))
    sim = start_dataverse("--webhook-timeout", "1", seed=False)  # the real 60 s would make a slow test
    try:
        with sim.client(oid=OID) as api:
            register_webhook(api, receiver.url("/sync-slow"), entity="msdyn_vendorgroup", message="Create",
                             mode=0, stage=20)
            r = api.post("msdyn_vendorgroups", json={"msdyn_vendorgroup": "SLOW"})
            kept = api.get("msdyn_vendorgroups", params={"$filter": "msdyn_vendorgroup eq 'SLOW'"}).json()["value"]
    finally:
        sim.stop()
    assert r.status_code == 400 and "Endpoint unavailable" in r.json()["error"]["message"]
    assert "no response within 1 s" in r.json()["error"]["message"]
    assert kept == []


def test_sync_success_commits(api, receiver: HttpReceiver):
    post = register_webhook(api, receiver.url("/sync-ok"), entity="msdyn_vendorgroup", message="Create",
                            mode=0, stage=40)
    pre = register_webhook(api, receiver.url("/sync-pre"), entity="msdyn_vendorgroup", message="Create",
                           mode=0, stage=10)
    try:
        r = api.post("msdyn_vendorgroups", json={
            "msdyn_vendorgroup": "OK1", "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='demf')"},
            headers={"Prefer": "return=representation"})
    finally:
        post.remove(api)
        pre.remove(api)
    assert r.status_code == 201
    body = receiver.at("/sync-ok")[0].body
    assert body["Mode"] == 0 and body["Stage"] == 40 and body["PrimaryEntityId"] == r.json()["msdyn_vendorgroupid"]
    assert body["IsInTransaction"] is True and kv(body["OutputParameters"])["id"] == body["PrimaryEntityId"]
    validation = receiver.at("/sync-pre")[0].body
    assert validation["Stage"] == 10 and validation["IsInTransaction"] is False
    assert validation["ParentContext"] is None and validation["OutputParameters"] == []


def test_payload_over_256_kb_is_trimmed_with_the_size_header(api, dataverse, receiver: HttpReceiver):
    reg = register_webhook(api, receiver.url("/trim"), entity="annotation", message="Create")
    try:
        small = api.post("annotations", json={"subject": "small", "notetext": "tiny"})
        big = api.post("annotations", json={"subject": "big", "documentbody": "QUJD" * 70_000,
                                            "filename": "big.bin", "isdocument": True})
        assert small.status_code == big.status_code == 204
        dataverse.drain()
        got = receiver.wait_for("/trim", 2)
    finally:
        reg.remove(api)
    by_subject = {}
    for request in got:
        body = request.body
        target = kv(body["InputParameters"])["Target"] if "InputParameters" in body else None
        by_subject["small" if target else "big"] = request
    small_req, big_req = by_subject["small"], by_subject["big"]
    assert "x-ms-dynamics-msg-size-exceeded" not in {k.lower() for k in small_req.headers}
    assert "x-ms-dynamics-msg-size-exceeded" in {k.lower() for k in big_req.headers}
    assert len(big_req.raw) < 256 * 1024
    body = big_req.body
    assert not TRIMMED & set(body)
    assert body["PrimaryEntityName"] == "annotation"
    assert body["PrimaryEntityId"] == big.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def test_http_header_and_query_string_auth(api, dataverse, receiver: HttpReceiver):
    settings = '<settings><setting name="x-dv-webhook-secret" value="s3cret"/></settings>'
    header = register_webhook(api, receiver.url("/auth-header"), entity="product", message="Update",
                              authtype=5, authvalue=settings)
    query = register_webhook(api, receiver.url("/auth-query"), entity="product", message="Update",
                             authtype=6, authvalue=settings)
    try:
        product = seed_id("product", "D0001")
        assert api.patch(f"products({product})", json={"price": 12.5}).status_code == 204
        dataverse.drain()
        by_header = receiver.wait_for("/auth-header", 1)[0]
        by_query = receiver.wait_for("/auth-query", 1)[0]
    finally:
        header.remove(api)
        query.remove(api)
    assert {k.lower(): v for k, v in by_header.headers.items()}["x-dv-webhook-secret"] == "s3cret"
    assert by_header.query == {}
    assert by_query.query == {"x-dv-webhook-secret": ["s3cret"]}
    value = kv(kv(by_query.body["InputParameters"])["Target"]["Attributes"])["price"]["Value"]
    assert Decimal(str(value)) == Decimal("12.5")


def test_bypass_step_ids_skip_the_listed_step(api, dataverse, receiver: HttpReceiver):
    reg = register_webhook(api, receiver.url("/bypass"), entity="msdyn_vendor", message="Update")
    try:
        vendor = seed_id("msdyn_vendor", "usmf", "V-US-001")
        api.patch(f"msdyn_vendors({vendor})", json={"msdyn_telephone": "1"},
                  headers={"MSCRM.BypassBusinessLogicExecutionStepIds": reg.step_id})
        part = (f"--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                f"PATCH /api/data/v9.2/msdyn_vendors({vendor}) HTTP/1.1\r\nContent-Type: application/json\r\n"
                f"MSCRM.BypassBusinessLogicExecutionStepIds: {reg.step_id}\r\n\r\n{{\"msdyn_telephone\":\"1b\"}}\r\n")
        batch = api.post("$batch", content=(part + "--b--\r\n").encode(),
                         headers={"Content-Type": "multipart/mixed; boundary=b"})
        assert batch.status_code == 200 and "204 No Content" in batch.text
        api.patch(f"msdyn_vendors({vendor})", json={"msdyn_telephone": "2"})
        dataverse.drain()
        got = receiver.wait_for("/bypass", 1)
    finally:
        reg.remove(api)
    assert len(got) == 1
    assert kv(kv(got[0].body["InputParameters"])["Target"]["Attributes"])["msdyn_telephone"] == "2"


def test_registration_rules(api, receiver: HttpReceiver):
    with pytest.raises(RegistrationError):
        register_webhook(api, receiver.url("/never"), entity="account", message="Update", mode=1, stage=20)
    with pytest.raises(RegistrationError):
        register_webhook(api, receiver.url("/never"), entity="account", message="Create",
                         images=[{"entityalias": "PreImage", "imagetype": 0}])
    leftovers = api.get("serviceendpoints", params={"$filter": "contract eq 8", "$select": "name,url"}).json()
    for endpoint in leftovers["value"]:
        if endpoint["url"].endswith("/never"):
            endpoint_id = endpoint["serviceendpointid"]
            steps = api.get(f"serviceendpoints({endpoint_id})/serviceendpoint_sdkmessageprocessingstep")
            for step in steps.json()["value"]:
                api.delete(f"sdkmessageprocessingsteps({step['sdkmessageprocessingstepid']})")
            api.delete(f"serviceendpoints({endpoint['serviceendpointid']})")


def test_disabled_steps_do_not_fire_and_autodelete_removes_succeeded_jobs(api, dataverse, receiver: HttpReceiver):
    reg = register_webhook(api, receiver.url("/disabled"), entity="msdyn_paymentterm", message="Update")
    auto = register_webhook(api, receiver.url("/autodelete"), entity="msdyn_paymentterm", message="Update")
    try:
        step = f"sdkmessageprocessingsteps({reg.step_id})"
        assert api.patch(step, json={"statecode": 1, "statuscode": 2}).status_code == 204
        autodelete = api.patch(f"sdkmessageprocessingsteps({auto.step_id})", json={"asyncautodelete": True})
        assert autodelete.status_code == 204
        term = seed_id("msdyn_paymentterm", "usmf", "Net10")
        assert api.patch(f"msdyn_paymentterms({term})", json={"msdyn_days": 11}).status_code == 204
        dataverse.drain()
        delivered = receiver.wait_for("/autodelete", 1)
        jobs = api.get("asyncoperations", params={"$filter": f"_owningextensionid_value eq {auto.step_id}"})
    finally:
        reg.remove(api)
        auto.remove(api)
    assert receiver.at("/disabled") == [] and len(delivered) == 1
    assert jobs.json()["value"] == []


def test_registration_command_registers_steps_with_default_images(api, dataverse, receiver: HttpReceiver):
    url = receiver.url("/cli")
    main(["--dataverse", dataverse.url, "--url", url, "--key", "k1", "--tables", "msdyn_customergroup",
          "--messages", "Update,Delete"])
    endpoint = api.get("serviceendpoints", params={"$filter": f"url eq '{url}'"}).json()["value"][0]
    steps = api.get(f"serviceendpoints({endpoint['serviceendpointid']})/serviceendpoint_sdkmessageprocessingstep",
                    params={"$select": "name,mode,stage"}).json()["value"]
    try:
        assert sorted(s["name"] for s in steps) == ["dw-oss: Delete of msdyn_customergroup",
                                                    "dw-oss: Update of msdyn_customergroup"]
        assert {(s["mode"], s["stage"]) for s in steps} == {(1, 40)}
        group = seed_id("msdyn_customergroup", "demf", "40")
        assert api.patch(f"msdyn_customergroups({group})", json={"msdyn_description": "cli"}).status_code == 204
        dataverse.drain()
        got = receiver.wait_for("/cli", 1)
    finally:
        for step in steps:
            images = api.get("sdkmessageprocessingstepimages", params={
                "$filter": f"_sdkmessageprocessingstepid_value eq {step['sdkmessageprocessingstepid']}"}).json()
            for image in images["value"]:
                api.delete(f"sdkmessageprocessingstepimages({image['sdkmessageprocessingstepimageid']})")
            api.delete(f"sdkmessageprocessingsteps({step['sdkmessageprocessingstepid']})")
        api.delete(f"serviceendpoints({endpoint['serviceendpointid']})")
    body = got[0].body
    assert got[0].query == {"code": ["k1"]}
    assert set(kv(body["PreEntityImages"])) == {"PreImage"} and set(kv(body["PostEntityImages"])) == {"PostImage"}
    assert kv(kv(body["PostEntityImages"])["PostImage"]["Attributes"])["msdyn_description"] == "cli"
    assert kv(kv(body["PreEntityImages"])["PreImage"]["Attributes"])["msdyn_groupid"] == "40"
