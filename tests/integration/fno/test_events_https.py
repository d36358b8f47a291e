"""Business events and data events delivered to an HTTPS endpoint (a local TLS receiver)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.fno import DEFAULT_OID, FnoSimulator, local_tls
from tests.integration.fno.receiver import Receiver

pytestmark = pytest.mark.integration
CUSTOMER_EVENT = "DWCustomerChangedBusinessEvent"


@pytest.fixture(scope="module")
def receiver(fno: FnoSimulator) -> Iterator[Receiver]:
    r = Receiver(fno.tls).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def endpoint(admin: httpx.Client, receiver: Receiver) -> str:
    assert receiver.url.startswith("https://")
    resp = admin.post("endpoints", json={"name": "receiver", "type": "https", "url": receiver.url,
                                         "headerName": "x-functions-key", "headerValue": "s3cret"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["headerValue"] == "***"  # secrets are not echoed
    return "receiver"


def activate(admin: httpx.Client, event_id: str, legal_entity: str, endpoint: str) -> dict[str, Any]:
    resp = admin.post("activations", json={"eventId": event_id, "legalEntity": legal_entity, "endpoint": endpoint})
    assert resp.status_code == 201, resp.text
    return resp.json()


def drain(admin: httpx.Client) -> None:
    assert admin.post("drain").status_code == 200


def is_business(event_id: str, key_field: str, key: str) -> Any:
    return lambda p: p.get("BusinessEventId") == event_id and p.get(key_field) == key


def data_event_for(message: str, logical: str, account: str) -> Any:
    def match(p: dict[str, Any]) -> bool:
        if p.get("MessageName") != message or p.get("PrimaryEntityName") != logical:
            return False
        target = p["InputParameters"][0]["value"]
        attrs = target.get("Attributes") or target.get("KeyAttributes")
        return any(a["key"] in ("mserp_customeraccount", "mserp_vendoraccountnumber") and a["value"] == account
                   for a in attrs)
    return match


def attrs(entity: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in entity["Attributes"]}


def test_catalog_lists_custom_business_events_and_data_events(admin: httpx.Client) -> None:
    catalog = admin.get("catalog").json()
    business = {e["eventId"]: e for e in catalog["businessEvents"]}
    assert business[CUSTOMER_EVENT]["custom"] is True and "custom" in business[CUSTOMER_EVENT]["category"]
    assert "DWVendorChangedBusinessEvent" in business
    assert {"CustomersV3.Create", "CustomersV3.Update", "CustomersV3.Delete"} <= {
        e["eventId"] for e in catalog["dataEvents"]}


def test_activation_sends_a_test_message(admin: httpx.Client, receiver: Receiver, endpoint: str) -> None:
    activation = activate(admin, "DWVendorChangedBusinessEvent", "usmf", endpoint)
    assert activation["active"] is True
    test = receiver.wait_for(lambda p: p.get("BusinessEventId") == "DWVendorChangedBusinessEvent"
                             and p.get("ControlNumber") == 0)
    assert test[0].headers["x-functions-key"] == "s3cret"
    assert test[0].headers["content-type"] == "application/json"
    assert test[0].json()["BusinessEventLegalEntity"] == "USMF"


def test_business_event_envelope(odata: httpx.Client, admin: httpx.Client, receiver: Receiver, endpoint: str) -> None:
    activate(admin, CUSTOMER_EVENT, "usmf", endpoint)
    before = datetime.now(UTC)
    url = "CustomersV3(dataAreaId='usmf',CustomerAccount='US-002')"
    assert odata.patch(url, json={"OrganizationName": "Fabrikam renamed"}).status_code == 204
    assert odata.patch(url, json={"OrganizationName": "Fabrikam renamed again"}).status_code == 204
    drain(admin)
    events = [r.json() for r in receiver.wait_for(is_business(CUSTOMER_EVENT, "CustomerAccount", "US-002"))]
    assert len(events) == 2
    first, second = events
    assert first["BusinessEventLegalEntity"] == "USMF" and first["LegalEntity"] == "USMF"
    assert first["ContextRecordSubject"] == "" and first["ParentContextRecordSubjects"] == []
    assert first["MajorVersion"] == 0 and first["MinorVersion"] == 0
    assert first["ChangeType"] == "Update" and first["OrganizationName"] == "Fabrikam renamed"
    assert second["ControlNumber"] > first["ControlNumber"] > 0
    assert first["EventId"] != second["EventId"] and uuid.UUID(first["EventId"])
    assert first["InitiatingUserAADObjectId"] == "{" + DEFAULT_OID.upper() + "}"
    ms = int(re.fullmatch(r"/Date\((\d+)\)/", first["EventTime"]).group(1))  # type: ignore[union-attr]
    assert ms >= int(before.timestamp() * 1000) - 1000
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", first["EventTimeIso8601"])


def test_legal_entity_scope_and_data_events(odata: httpx.Client, admin: httpx.Client, receiver: Receiver,
                                            endpoint: str) -> None:
    activate(admin, "CustomersV3.Update", "", endpoint)  # blank legal entity = all companies
    activate(admin, "CustomersV3.Delete", "demf", endpoint)
    us = "CustomersV3(dataAreaId='usmf',CustomerAccount='US-003')"
    de = "CustomersV3(dataAreaId='demf',CustomerAccount='DE-003')"
    assert odata.patch(us, json={"CreditLimit": 4242.125, "AddressCity": "Tacoma"}).status_code == 204
    assert odata.patch(de, params={"cross-company": "true"}, json={"AddressCity": "Bonn"}).status_code == 204
    drain(admin)
    update = receiver.wait_for(data_event_for("Update", "mserp_custcustomerv3entity", "US-003"))[0]
    raw = update.body.decode()
    assert "\\/Date(" in raw  # WCF-style escaping of '/'
    body = update.json()
    assert body["InitiatingUserAzureActiveDirectoryObjectId"] == DEFAULT_OID
    target = body["InputParameters"][0]["value"]
    assert target["__type"].startswith("Entity:")
    changed = attrs(target)
    assert changed["mserp_dataareaid"] == "usmf" and changed["mserp_customeraccount"] == "US-003"
    assert changed["mserp_creditlimit"] == 4242.125 and changed["mserp_addresscity"] == "Tacoma"
    assert "mserp_organizationname" not in changed  # only changed fields plus keys in Target
    pre = attrs(body["InputParameters"][1]["value"])
    assert body["InputParameters"][1]["key"] == "PreImage"
    assert pre["mserp_addresscity"] != "Tacoma" and pre["mserp_organizationname"]
    assert pre["mserp_creditlimitismandatory"]["Value"] in (0, 1)  # enums as OptionSetValue
    # blank legal entity: the demf update is delivered too; the usmf-only business event is not
    receiver.wait_for(data_event_for("Update", "mserp_custcustomerv3entity", "DE-003"))
    assert not [r for r in receiver.received
                if r.json().get("BusinessEventId") == CUSTOMER_EVENT and r.json().get("CustomerAccount") == "DE-003"]


def test_delete_event_carries_keys_and_pre_image(odata: httpx.Client, admin: httpx.Client, receiver: Receiver,
                                                 endpoint: str) -> None:
    activate(admin, "CustomersV3.Delete", "usmf", endpoint)
    create = odata.post("CustomersV3", json={"CustomerAccount": "T-EV-DEL", "OrganizationName": "Short lived",
                                             "CustomerGroupId": "30"})
    assert create.status_code == 201
    assert odata.delete("CustomersV3(dataAreaId='usmf',CustomerAccount='T-EV-DEL')").status_code == 204
    drain(admin)
    body = receiver.wait_for(data_event_for("Delete", "mserp_custcustomerv3entity", "T-EV-DEL"))[0].json()
    target = body["InputParameters"][0]["value"]
    assert target["__type"].startswith("EntityReference:")
    assert {a["key"]: a["value"] for a in target["KeyAttributes"]} == {
        "mserp_dataareaid": "usmf", "mserp_customeraccount": "T-EV-DEL"}
    assert attrs(body["InputParameters"][1]["value"])["mserp_organizationname"] == "Short lived"


def test_rolled_back_changeset_sends_nothing(odata: httpx.Client, admin: httpx.Client, receiver: Receiver,
                                             endpoint: str) -> None:
    activate(admin, "VendorGroups.Create", "usmf", endpoint)
    ok = odata.post("VendorGroups", json={"VendorGroupId": "EV-OK", "Description": "committed"})
    assert ok.status_code == 201
    batch = (
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
        "--c\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n"
        'POST VendorGroups HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"VendorGroupId":"EV-ROLLED"}\r\n'
        "--c\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n"
        'POST VendorGroups HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"Description":"no key"}\r\n'
        "--c--\r\n--b--\r\n"
    )
    resp = odata.post("$batch", content=batch.encode(), headers={"Content-Type": "multipart/mixed; boundary=b"})
    assert resp.status_code == 200 and "HTTP/1.1 400" in resp.text
    drain(admin)
    logical = "mserp_vendvendorgroupentity"
    created = [r.json() for r in receiver.received if r.json().get("PrimaryEntityName") == logical]
    groups = {attrs(e["InputParameters"][0]["value"])["mserp_vendorgroupid"] for e in created}
    assert "EV-OK" in groups and "EV-ROLLED" not in groups


def test_retries_then_errors_list_then_resend(fno: FnoSimulator, odata: httpx.Client, admin: httpx.Client) -> None:
    flaky = Receiver(fno.tls).start()
    try:
        assert admin.post("endpoints", json={"name": "flaky", "type": "https", "url": flaky.url}).status_code == 201
        activate(admin, "DWVendorChangedBusinessEvent", "", "flaky")
        url = "VendorsV2(dataAreaId='usmf',VendorAccountNumber='V-US-001')"
        # Two failures are absorbed by the retries (3 retries after the first attempt).
        flaky.fail_next(2)
        assert odata.patch(url, json={"AddressCity": "Spokane"}).status_code == 204
        drain(admin)
        assert flaky.failures == 2
        assert flaky.wait_for(lambda p: p.get("VendorAccountNumber") == "V-US-001")
        # Four failures exhaust them: the event goes to the errors list.
        flaky.clear()
        flaky.fail_next(4)
        assert odata.patch(url, json={"AddressCity": "Yakima"}).status_code == 204
        drain(admin)
        assert flaky.failures == 4 and flaky.received == []
        errors = [e for e in admin.get("errors").json() if e["endpoint"] == "flaky"]
        assert len(errors) == 1
        assert errors[0]["attempts"] == 4 and "HTTP 500" in errors[0]["error"]
        assert errors[0]["eventId"] == "DWVendorChangedBusinessEvent"
        resent = admin.post(f"errors/{errors[0]['id']}/resend")
        assert resent.status_code == 200 and resent.json()["resent"] == [errors[0]["id"]]
        drain(admin)
        again = flaky.wait_for(lambda p: p.get("VendorAccountNumber") == "V-US-001")
        assert again[0].body.decode() == errors[0]["payload"]  # the same event, byte for byte
        assert again[0].json()["ChangeType"] == "Update"
        assert not [e for e in admin.get("errors").json() if e["endpoint"] == "flaky"]
        assert admin.post("errors/999999/resend").status_code == 404
    finally:
        flaky.stop()


def test_bulk_update_raises_no_events_unless_asked(odata: httpx.Client, admin: httpx.Client, receiver: Receiver,
                                                   endpoint: str) -> None:
    activate(admin, "CustomersV3.Update", "usmf", endpoint)
    receiver.clear()
    resp = admin.post("bulk-update", json={"entity": "CustomersV3", "company": "usmf",
                                           "filter": "CustomerGroupId eq '40'", "set": {"CreditRating": "AAA"}})
    assert resp.status_code == 200 and resp.json()["updated"] >= 1
    drain(admin)
    assert not [r for r in receiver.received if r.json().get("MessageName") == "Update"]
    rated = odata.get("CustomersV3", params={"$filter": "CreditRating eq 'AAA'"}).json()["value"]
    assert len(rated) == resp.json()["updated"]
    asked = admin.post("bulk-update", json={"entity": "CustomersV3", "company": "usmf", "raiseEvents": True,
                                            "filter": "CustomerGroupId eq '40'", "set": {"CreditRating": "AA"}})
    assert asked.status_code == 200
    drain(admin)
    updates = [r.json() for r in receiver.received if r.json().get("MessageName") == "Update"]
    assert len({e["PrimaryEntityId"] for e in updates}) == asked.json()["updated"]
    bad = admin.post("bulk-update", json={"entity": "CustomersV3", "set": {"CreditRating": "x" * 50}})
    assert bad.status_code == 400


def test_inactivated_event_is_not_sent(odata: httpx.Client, admin: httpx.Client, receiver: Receiver,
                                       endpoint: str) -> None:
    activation = activate(admin, "PaymentTerms.Update", "usmf", endpoint)
    assert admin.patch(f"activations/{activation['id']}", json={"active": False}).status_code == 204
    assert odata.patch("PaymentTerms(dataAreaId='usmf',Name='Net10')", json={"Description": "ten"}).status_code == 204
    drain(admin)
    assert not [r for r in receiver.received if r.json().get("PrimaryEntityName") == "mserp_paymtermentity"]


def test_untrusted_certificate_fails_the_test_message(admin: httpx.Client, tmp_path: Path) -> None:
    stranger = Receiver(local_tls(tmp_path)).start()  # a self-signed certificate the simulator does not trust
    try:
        created = admin.post("endpoints", json={"name": "stranger", "type": "https", "url": stranger.url})
        assert created.status_code == 201
        resp = admin.post("activations", json={"eventId": CUSTOMER_EVENT, "legalEntity": "", "endpoint": "stranger"})
        assert resp.status_code == 400 and "CERTIFICATE_VERIFY_FAILED" in resp.json()["detail"]
        assert stranger.received == []
    finally:
        stranger.stop()


def test_activation_errors(admin: httpx.Client, endpoint: str) -> None:
    unknown_event = admin.post("activations", json={"eventId": "NoSuchEvent", "legalEntity": "", "endpoint": endpoint})
    assert unknown_event.status_code == 400 and "NoSuchEvent" in unknown_event.json()["detail"]
    unknown_le = admin.post("activations",
                            json={"eventId": CUSTOMER_EVENT, "legalEntity": "zzzz", "endpoint": endpoint})
    assert unknown_le.status_code == 400
    dead = admin.post("endpoints", json={"name": "dead", "type": "https", "url": "http://127.0.0.1:9/nothing"})
    assert dead.status_code == 201
    failed = admin.post("activations", json={"eventId": CUSTOMER_EVENT, "legalEntity": "", "endpoint": "dead"})
    assert failed.status_code == 400 and "test message" in failed.json()["detail"]
    assert not [a for a in admin.get("activations").json() if a["endpoint"] == "dead"]
    insecure = admin.post("endpoints", json={"name": "x", "type": "https", "url": "http://example.com/hook"})
    assert insecure.status_code == 400 and "https" in insecure.json()["detail"]
    no_queue = admin.post("endpoints", json={"name": "y", "type": "servicebus",
                                             "connectionString": "Endpoint=sb://x/;SharedAccessKeyName=a;"})
    assert no_queue.status_code == 400 and "queue" in no_queue.json()["detail"]
