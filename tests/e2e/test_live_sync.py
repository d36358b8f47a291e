"""Live sync both ways through the local host and both simulators, over HTTP only."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote

import httpx

from tests.e2e.conftest import Stack, eventually, settle

IEEE754 = {"Content-Type": "application/json; IEEE754Compatible=true"}


def _tag() -> str:
    return uuid.uuid4().hex[:6].upper()


def _applied(entries: list[dict], source: str) -> list[dict]:
    return [e for e in entries if e["outcome"] == "applied" and e["source"] == source]


def test_fno_customer_update_reaches_dataverse_with_exact_money_and_no_echo(stack: Stack) -> None:
    since = datetime.now(UTC)
    name = f"Contoso Retail {_tag()}"
    amount = Decimal("123456.1234567891")
    response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-002')",
                              params={"cross-company": "true"},
                              json={"OrganizationName": name, "CreditLimit": str(amount)}, headers=IEEE754)
    assert response.status_code == 204, response.text
    account = eventually(lambda: (a := stack.account("US-002")) and a["name"] == name and a,
                         what="the F&O name change reaching the account")
    assert Decimal(str(account["creditlimit"])) == amount
    entries = settle(stack, map="customers", key="USMF|US-002", since=since)
    # One write to Dataverse; it skipped our own webhook steps (MSCRM.BypassBusinessLogicExecutionStepIds), so
    # no webhook of it came back to the engine at all, and nothing went back to F&O.
    assert len(_applied(entries, "fno")) == 1
    assert [e for e in entries if e["source"] == "dataverse"] == []
    version = stack.account("US-002")["versionnumber"]
    settle(stack, map="customers", key="USMF|US-002")
    assert stack.account("US-002")["versionnumber"] == version


def test_dataverse_account_update_reaches_fno_without_echo(stack: Stack) -> None:
    since = datetime.now(UTC)
    account = stack.account("US-003")
    assert account is not None
    name = f"Fabrikam {_tag()}"
    response = stack.dv.patch(f"accounts({account['accountid']})", json={"name": name, "telephone1": "+1 555 0100"})
    assert response.status_code == 204, response.text
    eventually(lambda: (c := stack.customer("US-003")) and c["OrganizationName"] == name
               and c["PrimaryContactPhone"] == "+1 555 0100", what="the Dataverse change reaching the F&O customer")
    entries = settle(stack, map="customers", key="USMF|US-003", since=since)
    assert len(_applied(entries, "dataverse")) == 1
    assert _applied(entries, "fno") == []


def test_customer_created_and_deleted_in_fno_follows_in_dataverse(stack: Stack) -> None:
    number = f"US-N{_tag()}"
    response = stack.fo.post("CustomersV3", json={
        "dataAreaId": "usmf", "CustomerAccount": number, "OrganizationName": "Northwind New",
        "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
        "PaymentTerms": "Net30", "CreditLimit": "2500.5000000001"}, headers=IEEE754)
    assert response.status_code == 201, response.text
    account = eventually(lambda: stack.account(number), what="the new customer appearing as an account")
    assert account["name"] == "Northwind New"
    assert Decimal(str(account["creditlimit"])) == Decimal("2500.5000000001")
    assert account["_msdyn_customergroupid_value"] and account["_transactioncurrencyid_value"]
    assert account["customertypecode"] == 3
    response = stack.fo.delete(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{number}')",
                               params={"cross-company": "true"})
    assert response.status_code == 204, response.text
    eventually(lambda: stack.account(number) is None, what="the delete reaching Dataverse")
    settle(stack, map="customers", key=f"USMF|{number}")
    assert stack.customer(number) is None


def test_account_created_and_deleted_in_dataverse_follows_in_fno(stack: Stack) -> None:
    number = f"US-D{_tag()}"
    group = stack.rows("msdyn_customergroups", **{
        "$filter": f"msdyn_groupid eq '20' and _msdyn_company_value eq {stack.company_id('usmf')}"})[0]
    response = stack.dv.post("accounts", json={
        "name": "Adatum New", "accountnumber": number, "customertypecode": 3, "creditlimit": 77.0000000007,
        "msdyn_company@odata.bind": f"/cdm_companies({stack.company_id('usmf')})",
        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({group['msdyn_customergroupid']})",
        "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='EUR')"})
    assert response.status_code == 204, response.text
    customer = eventually(lambda: stack.customer(number), what="the new account appearing as an F&O customer")
    assert customer["OrganizationName"] == "Adatum New"
    assert customer["CustomerGroupId"] == "20" and customer["SalesCurrencyCode"] == "EUR"
    assert customer["PartyType"] == "Organization"
    account_id = stack.account(number)["accountid"]
    assert stack.dv.delete(f"accounts({account_id})").status_code == 204
    eventually(lambda: stack.customer(number) is None, what="the delete reaching F&O")
    settle(stack, map="customers", key=f"USMF|{number}")
    assert stack.account(number) is None


def test_vendors_sync_both_ways(stack: Stack) -> None:
    since = datetime.now(UTC)
    def vendor_row() -> dict | None:
        rows = stack.rows("msdyn_vendors", **{"$filter": "msdyn_vendoraccountnumber eq 'V-US-002' and "
                                              f"_msdyn_company_value eq {stack.company_id('usmf')}"})
        return rows[0] if rows else None

    name = f"Litware {_tag()}"
    response = stack.fo.patch("VendorsV2(dataAreaId='usmf',VendorAccountNumber='V-US-002')",
                              params={"cross-company": "true"}, json={"VendorOrganizationName": name})
    assert response.status_code == 204, response.text
    row = eventually(lambda: (v := vendor_row()) and v["msdyn_vendorname"] == name and v,
                     what="the F&O vendor change reaching msdyn_vendors")
    settle(stack, map="vendors", key="USMF|V-US-002")
    city = f"Redmond {_tag()}"
    response = stack.dv.patch(f"msdyn_vendors({row['msdyn_vendorid']})", json={"msdyn_addresscity": city})
    assert response.status_code == 204
    eventually(lambda: stack.fo.get("VendorsV2(dataAreaId='usmf',VendorAccountNumber='V-US-002')",
                                    params={"cross-company": "true"}).json()["AddressCity"] == city,
               what="the Dataverse vendor change reaching F&O")
    entries = settle(stack, map="vendors", key="USMF|V-US-002", since=since)
    assert len(_applied(entries, "fno")) == 1 and len(_applied(entries, "dataverse")) == 1


def test_unmapped_columns_cause_no_write(stack: Stack) -> None:
    # Link the record first (what initial sync does), so only the unmapped change is left to judge.
    response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-004')",
                              params={"cross-company": "true"}, json={"OrganizationName": f"Linked {_tag()}"})
    assert response.status_code == 204, response.text
    eventually(lambda: any(e["outcome"] == "applied" for e in stack.activity(map="customers", key="USMF|US-004")),
               what="the first change linking US-004")
    settle(stack, map="customers", key="USMF|US-004")
    before = stack.account("US-004")
    response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-004')",
                              params={"cross-company": "true"}, json={"CreditRating": f"R{_tag()}"})
    assert response.status_code == 204, response.text
    entries = eventually(lambda: settle(stack, map="customers", key="USMF|US-004") or None,
                         what="the unmapped F&O change being looked at")
    assert entries and entries[0]["outcome"] == "skipped", entries
    assert stack.account("US-004")["versionnumber"] == before["versionnumber"]
    customer = stack.customer("US-004")
    assert stack.dv.patch(f"accounts({before['accountid']})", json={"creditonhold": True}).status_code == 204
    settle(stack, map="customers", key="USMF|US-004")
    assert stack.customer("US-004")["ModifiedDateTime"] == customer["ModifiedDateTime"]


def test_rapid_updates_end_with_the_later_value(stack: Stack) -> None:
    first, last = f"First {_tag()}", f"Last {_tag()}"
    for name in (first, last):
        response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-005')",
                                  params={"cross-company": "true"}, json={"OrganizationName": name})
        assert response.status_code == 204
    settle(stack, map="customers", key="USMF|US-005")
    assert stack.account("US-005")["name"] == last
    account = stack.account("US-001")
    for name in (first, last):
        assert stack.dv.patch(f"accounts({account['accountid']})", json={"name": name}).status_code == 204
    settle(stack, map="customers", key="USMF|US-001")
    assert stack.customer("US-001")["OrganizationName"] == last


def test_duplicate_delivery_applies_once(stack: Stack) -> None:
    since = datetime.now(UTC)
    name = f"Silent {_tag()}"
    response = httpx.post(f"{stack.fno.admin_url}bulk-update", json={
        "entity": "CustomersV3", "company": "usmf", "filter": "CustomerAccount eq 'US-007'",
        "set": {"OrganizationName": name}, "raiseEvents": False}, timeout=30)
    assert response.status_code < 300, response.text
    operation = str(uuid.uuid4())
    event = {
        "MessageName": "Update", "PrimaryEntityName": "mserp_custcustomerv3entity", "OperationId": operation,
        "PrimaryEntityId": str(uuid.uuid4()), "OperationCreatedOn": "/Date(1763700000000)/",
        "InputParameters": [{"key": "Target", "value": {
            "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
            "LogicalName": "mserp_custcustomerv3entity",
            "Attributes": [{"key": "mserp_dataareaid", "value": "usmf"},
                           {"key": "mserp_customeraccount", "value": "US-007"}]}}],
    }
    for _ in range(2):
        answer = httpx.post(f"{stack.host.url}/api/fno/events", content=json.dumps(event),
                            headers={"x-functions-key": stack.host.function_key}, timeout=30)
        assert answer.status_code == 202, answer.text
    eventually(lambda: stack.account("US-007")["name"] == name, what="the resent event being applied")
    entries = settle(stack, map="customers", key="USMF|US-007", since=since)
    assert len([e for e in entries if e["event_id"] == f"fno:{operation}"]) == 1


def test_lookup_whose_parent_arrives_later_resolves(stack: Stack) -> None:
    group = f"G{_tag()}"[:6]
    company = stack.company_id("usmf")
    # The group exists in Dataverse only (created without running async steps, so it is not synced).
    response = stack.dv.post("msdyn_customergroups", json={
        "msdyn_groupid": group, "msdyn_description": "late group",
        "msdyn_company@odata.bind": f"/cdm_companies({company})"},
        headers={"MSCRM.BypassBusinessLogicExecution": "CustomAsync"})
    assert response.status_code == 204, response.text
    group_id = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    number = f"US-L{_tag()}"
    response = stack.dv.post("accounts", json={
        "name": "Late Parent", "accountnumber": number, "customertypecode": 3,
        "msdyn_company@odata.bind": f"/cdm_companies({company})",
        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups({group_id})",
        "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')"})
    assert response.status_code == 204, response.text
    eventually(lambda: any(e["outcome"] == "retrying" and "lookup_pending" in e["reason"]
                           for e in stack.activity(map="customers", key=f"dataverse:{_account_id(stack, number)}")),
               what="the account waiting for its customer group")
    response = stack.fo.post("CustomerGroups", json={"dataAreaId": "usmf", "CustomerGroupId": group,
                                                     "Description": "late group"})
    assert response.status_code == 201, response.text
    customer = eventually(lambda: stack.customer(number), what="the account reaching F&O once its group exists")
    assert customer["CustomerGroupId"] == group


def _account_id(stack: Stack, number: str) -> str:
    account = stack.account(number)
    return account["accountid"] if account else "none"


def test_validation_error_lands_in_the_error_log_and_resubmits_after_a_fix(stack: Stack) -> None:
    # Dataverse money columns stop at 100,000,000,000,000; F&O takes more.
    response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-008')",
                              params={"cross-company": "true"},
                              json={"CreditLimit": "500000000000000.5"}, headers=IEEE754)
    assert response.status_code == 204, response.text
    error = eventually(lambda: next((e for e in stack.errors(map="customers") if e["key"] == "USMF|US-008"), None),
                       what="the refused change in the error log")
    assert error["category"] == "application"
    full = stack.admin.get(f"/api/manage/v1/errors/{quote(error['id'], safe='')}").json()
    assert "creditlimit" in full["text"] and "0x80044331" in full["text"], full["text"]
    assert full["attempts"] == 1
    assert json.loads(full["change"])["entity"] == "CustomersV3"
    # Fix the data in F&O without raising events (a set-based update), then resubmit.
    response = httpx.post(f"{stack.fno.admin_url}bulk-update", json={
        "entity": "CustomersV3", "company": "usmf", "filter": "CustomerAccount eq 'US-008'",
        "set": {"CreditLimit": "9000.0000000009"}, "raiseEvents": False}, timeout=30)
    assert response.status_code < 300, response.text
    answer = stack.admin.post(f"/api/manage/v1/errors/{quote(error['id'], safe='')}/resubmit")
    assert answer.status_code == 202, answer.text
    eventually(lambda: Decimal(str(stack.account("US-008")["creditlimit"])) == Decimal("9000.0000000009"),
               what="the resubmitted change being applied")
    assert stack.admin.get(f"/api/manage/v1/errors/{quote(error['id'], safe='')}").json()["status"] == "resubmitted"


def test_throttling_slows_the_engine_but_loses_nothing(stack: Stack) -> None:
    # The stack's Dataverse allows the engine 20 requests per 2 s (deployment alone meets 429s), and a
    # burst of F&O changes meets more; every change still arrives and none is left throttled.
    names = {f"US-{n:03d}": f"Burst {_tag()}" for n in range(1, 11)}
    for round_ in range(3):
        for account, name in names.items():
            response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')",
                                      params={"cross-company": "true"},
                                      json={"OrganizationName": f"{name} {round_}"})
            assert response.status_code == 204
    company = stack.company_id("usmf")

    def arrived() -> bool:
        rows = stack.rows("accounts", **{"$select": "accountnumber,name", "$filter": (
            f"_msdyn_company_value eq {company} and startswith(accountnumber,'US-0')")})
        current = {row["accountnumber"]: row["name"] for row in rows}
        return all(current.get(account) == f"{name} 2" for account, name in names.items())

    eventually(arrived, timeout=120, what="the last change of each burst record")
    assert stack.host.log().count(" 429 ") > 0, "the engine never met service protection"
    assert not [e for e in stack.errors(map="customers", status="all") if e["category"] == "throttled"]
