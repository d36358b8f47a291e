"""OData over HTTP: keys, CRUD, query options, paging, cross-company, errors, auth, decimals."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from devstack.fno.wire import dumps, loads
from tests.fixtures.fno import FnoSimulator

pytestmark = pytest.mark.integration

CUSTOMER = "CustomersV3(dataAreaId='usmf',CustomerAccount='{}')"


def new_customer(odata: httpx.Client, account: str, **fields: object) -> httpx.Response:
    body = {"CustomerAccount": account, "OrganizationName": f"Test {account}", "CustomerGroupId": "30",
            "SalesCurrencyCode": "USD", "PartyType": "Organization", **fields}
    # Our own writer: it puts Decimals on the wire as JSON numbers without a float in between.
    return odata.post("CustomersV3", content=dumps(body), headers={"Content-Type": "application/json"})


def inner(resp: httpx.Response) -> str:
    error = resp.json()["error"]
    return error.get("innererror", {}).get("message", "") + " " + error["message"]


def test_service_document_lists_public_collections(odata: httpx.Client) -> None:
    names = {s["name"] for s in odata.get("").json()["value"]}
    assert {"CustomersV3", "VendorsV2", "CustomerGroups", "VendorGroups", "LegalEntities", "Currencies",
            "PaymentTerms", "ContactPersonsV2", "ReleasedProductsV2"} <= names


def test_metadata_is_csdl_with_keys_enums_and_sets(odata: httpx.Client) -> None:
    resp = odata.get("$metadata")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/xml")
    xml = resp.text
    assert '<EntityType Name="CustomerV3">' in xml
    assert '<Key><PropertyRef Name="dataAreaId"/><PropertyRef Name="CustomerAccount"/></Key>' in xml
    assert '<EnumType Name="NoYes"><Member' not in xml  # members are on their own lines
    assert '<Member Name="Yes" Value="1"/>' in xml
    assert 'Type="Microsoft.Dynamics.DataEntities.NoYes"' in xml
    assert 'Name="CreditLimit" Type="Edm.Decimal" Nullable="false" Precision="32" Scale="10"' in xml
    assert '<EntitySet Name="CustomersV3" EntityType="Microsoft.Dynamics.DataEntities.CustomerV3"/>' in xml


def test_create_returns_201_with_body_and_location(odata: httpx.Client, fno: FnoSimulator) -> None:
    resp = new_customer(odata, "T-CREATE-1", CreditLimit=1500)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["dataAreaId"] == "usmf"  # default company of the caller, lower case as F&O returns it
    assert body["CustomerAccount"] == "T-CREATE-1"
    assert body["CreditLimitIsMandatory"] == "No"  # enums default to their first symbol
    assert body["ModifiedBy"] == "5a1c0c56-8f4b-4c3a-9e07-3b1d2a4c6e01"  # the token's oid
    assert body["@odata.etag"].startswith('W/"')
    assert resp.headers["location"] == f"{fno.data_url}CustomersV3(dataAreaId='usmf',CustomerAccount='T-CREATE-1')"


def test_key_addressing_needs_every_key_field(odata: httpx.Client) -> None:
    ok = odata.get(CUSTOMER.format("US-001"))
    assert ok.status_code == 200
    assert ok.json()["OrganizationName"] == "Contoso Retail (US)"
    missing = odata.get("CustomersV3(CustomerAccount='US-001')")
    assert missing.status_code == 400
    assert "number of keys" in missing.json()["error"]["message"]
    assert "dataAreaId, CustomerAccount" in missing.json()["error"]["message"]
    positional = odata.get("CustomersV3('US-001')")
    assert positional.status_code == 400
    single_key = odata.get("Currencies('EUR')")  # one key field: positional form is fine
    assert single_key.status_code == 200 and single_key.json()["Name"] == "Euro"
    assert odata.get("Currencies(CurrencyCode='EUR')").json()["CurrencyCode"] == "EUR"


def test_keys_and_filters_ignore_case(odata: httpx.Client) -> None:
    resp = odata.get("CustomersV3(dataAreaId='USMF',CustomerAccount='us-001')")
    assert resp.status_code == 200
    assert resp.json()["CustomerAccount"] == "US-001"


def test_patch_put_delete(odata: httpx.Client) -> None:
    assert new_customer(odata, "T-PATCH-1", CreditLimit=100, AddressCity="Austin").status_code == 201
    url = CUSTOMER.format("T-PATCH-1")
    patched = odata.patch(url, json={"OrganizationName": "Renamed", "CreditLimit": 25000})
    assert patched.status_code == 204, patched.text
    row = odata.get(url).json()
    assert row["OrganizationName"] == "Renamed" and row["CreditLimit"] == 25000 and row["AddressCity"] == "Austin"
    # PUT replaces: fields not sent go back to their empty value.
    put = odata.put(url, json={"OrganizationName": "Replaced", "CustomerGroupId": "10"})
    assert put.status_code == 204, put.text
    row = odata.get(url).json()
    assert row["OrganizationName"] == "Replaced" and row["AddressCity"] == "" and row["CreditLimit"] == 0
    assert odata.delete(url).status_code == 204
    gone = odata.get(url)
    assert gone.status_code == 404
    assert "Resource not found" in gone.json()["error"]["message"]
    assert odata.delete(url).status_code == 404
    assert odata.patch(url, json={"OrganizationName": "x"}).status_code == 404


def test_etag_mismatch_is_412(odata: httpx.Client) -> None:
    assert new_customer(odata, "T-ETAG-1").status_code == 201
    url = CUSTOMER.format("T-ETAG-1")
    tag = odata.get(url).json()["@odata.etag"]
    assert odata.patch(url, json={"OrganizationName": "A"}, headers={"If-Match": tag}).status_code == 204
    stale = odata.patch(url, json={"OrganizationName": "B"}, headers={"If-Match": tag})
    assert stale.status_code == 412


def test_decimals_keep_ten_places_without_float(odata: httpx.Client) -> None:
    value = "12345678901234567890.1234567891"
    resp = new_customer(odata, "T-DEC-1", CreditLimit=Decimal(value))
    assert resp.status_code == 201, resp.text
    raw = odata.get(CUSTOMER.format("T-DEC-1"), params={"$select": "CreditLimit"}).content
    assert b'"CreditLimit":12345678901234567890.1234567891' in raw
    assert loads(raw)["CreditLimit"] == Decimal(value)
    # IEEE754Compatible clients get decimals as strings.
    as_text = odata.get(CUSTOMER.format("T-DEC-1"), params={"$select": "CreditLimit"},
                        headers={"Accept": "application/json;IEEE754Compatible=true"})
    assert as_text.json()["CreditLimit"] == value
    too_precise = odata.patch(CUSTOMER.format("T-DEC-1"), json={"CreditLimit": "1.12345678901"})
    assert too_precise.status_code == 400
    assert "CreditLimit" in inner(too_precise)


def test_filter_select_orderby_top_skip_count(odata: httpx.Client) -> None:
    resp = odata.get("CustomersV3", params={
        "$filter": "CustomerGroupId eq '10' and CreditLimit ge 10000", "$select": "CustomerAccount,CreditLimit",
        "$orderby": "CreditLimit desc", "$count": "true",
    })
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rows = body["value"]
    assert body["@odata.count"] == len(rows) >= 2
    assert [r["CreditLimit"] for r in rows] == sorted((r["CreditLimit"] for r in rows), reverse=True)
    assert set(rows[0]) == {"@odata.etag", "CustomerAccount", "CreditLimit"}
    page = odata.get("CustomersV3", params={"$filter": "CustomerAccount eq 'US-*'", "$orderby": "CustomerAccount",
                                            "$skip": "2", "$top": "3", "$select": "CustomerAccount"}).json()["value"]
    assert [r["CustomerAccount"] for r in page] == ["US-003", "US-004", "US-005"]
    count = odata.get("CustomersV3/$count", params={"$filter": "CustomerGroupId eq '10'"})
    assert count.status_code == 200 and int(count.text) >= 2


def test_enum_literal_and_wildcard_filters(odata: httpx.Client) -> None:
    yes = odata.get("CustomersV3", params={
        "$filter": "CreditLimitIsMandatory eq Microsoft.Dynamics.DataEntities.NoYes'Yes'",
        "$select": "CustomerAccount,CreditLimitIsMandatory"}).json()["value"]
    assert yes and all(r["CreditLimitIsMandatory"] == "Yes" for r in yes)
    assert "US-001" in {r["CustomerAccount"] for r in yes}
    plain_string = odata.get("CustomersV3", params={"$filter": "CreditLimitIsMandatory eq 'Yes'"})
    assert plain_string.status_code == 400
    assert "incompatible types" in plain_string.json()["error"]["message"]
    wrong_enum = odata.get("CustomersV3", params={
        "$filter": "CreditLimitIsMandatory eq Microsoft.Dynamics.DataEntities.DirPartyBaseType'Person'"})
    assert wrong_enum.status_code == 400
    retail = odata.get("CustomersV3", params={"$filter": "OrganizationName eq '*retail*'",
                                              "$select": "OrganizationName"}).json()["value"]
    assert [r["OrganizationName"] for r in retail] == ["Contoso Retail (US)"]
    starts = odata.get("CustomersV3", params={"$filter": "OrganizationName eq 'fabrikam*'"}).json()["value"]
    assert len(starts) == 1
    unsupported = odata.get("CustomersV3", params={"$filter": "CustomerGroupId in ('10','20')"})
    assert unsupported.status_code == 400


def test_default_company_unless_cross_company(odata: httpx.Client) -> None:
    own = odata.get("CustomersV3", params={"$select": "dataAreaId"}).json()["value"]
    assert {r["dataAreaId"] for r in own} == {"usmf"}
    every = odata.get("CustomersV3", params={"cross-company": "true", "$select": "dataAreaId"}).json()["value"]
    assert {r["dataAreaId"] for r in every} == {"usmf", "demf"}
    german = odata.get("CustomersV3", params={"cross-company": "true", "$filter": "dataAreaId eq 'demf'",
                                              "$select": "dataAreaId,CustomerAccount"}).json()["value"]
    assert german and {r["dataAreaId"] for r in german} == {"demf"}
    other = "CustomersV3(dataAreaId='demf',CustomerAccount='DE-001')"
    assert odata.get(other).status_code == 404  # another company's record needs cross-company=true
    assert odata.get(other, params={"cross-company": "true"}).status_code == 200
    patched = odata.patch(other, params={"cross-company": "true"}, json={"AddressCity": "Bonn"})
    assert patched.status_code == 204
    # global entities are not striped by company
    assert {r["CurrencyCode"] for r in odata.get("Currencies").json()["value"]} >= {"USD", "EUR"}


def test_create_in_another_company_by_body(odata: httpx.Client) -> None:
    resp = new_customer(odata, "T-DE-1", dataAreaId="DEMF", SalesCurrencyCode="EUR")
    assert resp.status_code == 201, resp.text
    assert resp.json()["dataAreaId"] == "demf"
    unknown = new_customer(odata, "T-XX-1", dataAreaId="zzzz")
    assert unknown.status_code == 400 and "zzzz" in inner(unknown)


def test_paging_with_next_link(odata: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = "CustomersV3"
    params: dict[str, str] | None = {"cross-company": "true", "$select": "CustomerAccount",
                                     "$orderby": "CustomerAccount"}
    pages = 0
    while url:
        resp = odata.get(url, params=params, headers={"Prefer": "odata.maxpagesize=4"})
        body = resp.json()
        assert len(body["value"]) <= 4
        seen += [r["CustomerAccount"] for r in body["value"]]
        url, params = body.get("@odata.nextLink"), None
        pages += 1
    assert pages >= 4
    assert len(seen) == len(set(seen))
    total = odata.get("CustomersV3/$count", params={"cross-company": "true"}).text
    assert len(seen) == int(total)


def test_error_cases_name_the_problem(odata: httpx.Client) -> None:
    mandatory = odata.post("CustomersV3", json={"CustomerAccount": "T-ERR-1", "OrganizationName": "No group"})
    assert mandatory.status_code == 400
    assert "CustomerGroupId" in inner(mandatory) and "must be filled in" in inner(mandatory)
    assert mandatory.json()["error"]["innererror"]["type"].endswith("AxODataWriteException")
    bad_enum = new_customer(odata, "T-ERR-2", CreditLimitIsMandatory="Maybe")
    assert bad_enum.status_code == 400 and "CreditLimitIsMandatory" in inner(bad_enum)
    assert "NoYes" in inner(bad_enum)
    assert new_customer(odata, "T-ERR-3").status_code == 201
    duplicate = new_customer(odata, "t-err-3")  # keys are case-insensitive
    assert duplicate.status_code == 400 and "already exists" in inner(duplicate)
    unknown_field = new_customer(odata, "T-ERR-4", Colour="blue")
    assert unknown_field.status_code == 400 and "Colour" in inner(unknown_field)
    too_long = new_customer(odata, "T-ERR-5", CustomerGroupId="12345678901")
    assert too_long.status_code == 400 and "CustomerGroupId" in inner(too_long)
    bad_group = new_customer(odata, "T-ERR-6", CustomerGroupId="NOPE")
    assert bad_group.status_code == 400 and "not found in the relating table" in inner(bad_group)
    not_found = odata.get(CUSTOMER.format("NO-SUCH"))
    assert not_found.status_code == 404
    unknown_set = odata.get("Customers")
    assert unknown_set.status_code == 404
    bad_filter = odata.get("CustomersV3", params={"$filter": "NoSuchField eq 'x'"})
    assert bad_filter.status_code == 400 and "NoSuchField" in bad_filter.json()["error"]["message"]
    bad_json = odata.post("CustomersV3", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    key_change = odata.patch(CUSTOMER.format("T-ERR-3"), json={"CustomerAccount": "OTHER"})
    assert key_change.status_code == 400 and "CustomerAccount" in inner(key_change)
    in_use = odata.delete("CustomerGroups(dataAreaId='usmf',CustomerGroupId='30')")
    assert in_use.status_code == 400 and "dependent records" in inner(in_use)


def test_bearer_token_is_required(fno: FnoSimulator) -> None:
    resp = httpx.get(fno.data_url + "CustomersV3")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    bad_scheme = httpx.get(fno.data_url + "CustomersV3", headers={"Authorization": "Basic abc"})
    assert bad_scheme.status_code == 401


def test_caller_recorded_as_modified_by(fno: FnoSimulator) -> None:
    app_id = "0f5c7a39-92a3-4c1c-8c11-7a0b3b5d9e42"
    headers = fno.headers(oid=None, appid=app_id)
    with httpx.Client(base_url=fno.data_url, headers=headers) as client:
        assert client.post("VendorGroups", json={"VendorGroupId": "T-APP", "Description": "by app"}).status_code == 201
        row = client.get("VendorGroups(dataAreaId='usmf',VendorGroupId='T-APP')").json()
        assert row["ModifiedBy"] == app_id
    opaque = {"Authorization": "Bearer not-a-jwt"}
    resp = httpx.post(fno.data_url + "VendorGroups", headers=opaque, json={"VendorGroupId": "T-OPAQUE"})
    assert resp.status_code == 201
    again = httpx.get(fno.data_url + "VendorGroups(dataAreaId='usmf',VendorGroupId='T-OPAQUE')", headers=opaque)
    assert again.json()["ModifiedBy"] == resp.json()["ModifiedBy"]  # a stable stand-in id per token


def test_dates_and_enums_on_the_wire(odata: httpx.Client) -> None:
    product = odata.get("ReleasedProductsV2(dataAreaId='usmf',ItemNumber='D0004')").json()
    assert product["SalesPriceDate"] == "2024-01-01T12:00:00Z"  # F&O dates travel as DateTimeOffset at noon
    assert product["ProductType"] == "Item"
    assert product["PurchasePrice"] == 410.3333333333
    url = "ReleasedProductsV2(dataAreaId='usmf',ItemNumber='D0004')"
    assert odata.patch(url, json={"SalesPriceDate": "2025-02-03"}).status_code == 204
    assert odata.get(url).json()["SalesPriceDate"] == "2025-02-03T12:00:00Z"
    found = odata.get("ReleasedProductsV2", params={"$filter": "SalesPriceDate ge 2025-01-01"}).json()["value"]
    assert [p["ItemNumber"] for p in found] == ["D0004"]


def test_encoded_keys_and_enum_ordering(odata: httpx.Client) -> None:
    created = new_customer(odata, "T/ENC'1")
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert "CustomerAccount='T%2FENC%27%271'" in location  # the value is URL-encoded, quotes doubled
    assert odata.get(location).json()["CustomerAccount"] == "T/ENC'1"
    fully_encoded = "CustomersV3(dataAreaId%3D%27usmf%27%2CCustomerAccount%3D%27T%2FENC%27%271%27)"
    assert odata.get(fully_encoded).json()["CustomerAccount"] == "T/ENC'1"
    rows = odata.get("CustomersV3", params={"$orderby": "CreditLimitIsMandatory desc,CustomerAccount",
                                            "$select": "CreditLimitIsMandatory"}).json()["value"]
    symbols = [r["CreditLimitIsMandatory"] for r in rows]
    assert symbols == sorted(symbols, key=lambda s: {"No": 0, "Yes": 1}[s], reverse=True)
