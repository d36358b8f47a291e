"""Create, retrieve, update, upsert, delete, conditional headers, @odata.bind, errors and auth over HTTP
(reference §2.1-2.4, §2.8)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import pytest

from devstack.dataverse.seed import seed_id

pytestmark = pytest.mark.integration
USMF = seed_id("cdm_company", "usmf")


@pytest.fixture(scope="module")
def api(dataverse) -> httpx.Client:
    with dataverse.client() as client:
        yield client


def exact(response: httpx.Response) -> dict:
    return json.loads(response.content, parse_float=Decimal)


def new_number() -> str:
    return "T-" + uuid.uuid4().hex[:10]


def test_create_answers_204_with_entity_id_and_the_row_reads_back(api, dataverse):
    number = new_number()
    r = api.post("accounts", json={
        "name": "Contoso", "accountnumber": number, "creditlimit": 25000, "customertypecode": 3,
        "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')",
    })
    assert r.status_code == 204 and r.content == b""
    entity_id = r.headers["OData-EntityId"]
    assert entity_id.startswith(dataverse.base_url + "accounts(")
    account_id = entity_id.rsplit("(", 1)[1].rstrip(")")
    got = api.get(f"accounts({account_id})", params={"$select": "name,accountnumber,_msdyn_company_value,createdon"})
    assert got.status_code == 200
    body = got.json()
    assert body["@odata.etag"].startswith('W/"')
    context = "$metadata#accounts(name,accountnumber,_msdyn_company_value,createdon)/$entity"
    assert body["@odata.context"].endswith(context)
    assert body["accountid"] == account_id and body["name"] == "Contoso" and body["accountnumber"] == number
    assert body["_msdyn_company_value"] == USMF
    assert body["createdon"].endswith("Z")


def test_create_with_return_representation_answers_201_with_the_row(api):
    r = api.post("accounts?$select=name,creditlimit", json={"name": "Fabrikam", "creditlimit": 10},
                 headers={"Prefer": "return=representation"})
    assert r.status_code == 201
    body = r.json()
    assert body["name"] == "Fabrikam" and body["creditlimit"] == 10 and "@odata.etag" in body
    assert set(body) == {"@odata.context", "@odata.etag", "name", "creditlimit", "accountid"}


def test_money_and_decimal_keep_ten_places_and_datetimes_are_utc(api):
    r = api.post(
        "accounts", content=b'{"name":"Precise","creditlimit":12345678901.1234567891}',
        headers={"Prefer": "return=representation", "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    assert exact(r)["creditlimit"] == Decimal("12345678901.1234567891")
    assert b"12345678901.1234567891" in r.content
    currency = api.post("transactioncurrencies", content=(
        b'{"isocurrencycode":"XTS","currencyname":"Test","currencysymbol":"T","currencyprecision":4,'
        b'"exchangerate":0.0000000001}'),
        headers={"Prefer": "return=representation", "Content-Type": "application/json"})
    assert currency.status_code == 201, currency.text
    assert exact(currency)["exchangerate"] == Decimal("1E-10")
    contact = api.post("contacts", json={"lastname": "Date", "birthdate": "1990-05-17"},
                       headers={"Prefer": "return=representation"})
    assert contact.json()["birthdate"] == "1990-05-17"


def test_retrieve_by_alternate_key_including_a_lookup_part(api):
    r = api.get(f"accounts(accountnumber='US-001',_msdyn_company_value={USMF})", params={"$select": "accountnumber"})
    assert r.status_code == 200
    assert r.json()["accountid"] == seed_id("account", "usmf", "US-001")
    bare = api.get(f"accounts(accountnumber='US-001',msdyn_company={USMF})")
    assert bare.status_code == 400 and "_msdyn_company_value" in bare.json()["error"]["message"]
    single = api.get("transactioncurrencies(isocurrencycode='EUR')", params={"$select": "currencyname"})
    assert single.json()["currencyname"] == "Euro"
    # Alternate keys compare case-insensitively, like Dataverse's SQL collation.
    assert api.get("cdm_companies(cdm_companycode='USMF')").json()["cdm_companyid"] == USMF


def test_missing_rows_answer_404_with_the_documented_error_body(api):
    missing = str(uuid.uuid4())
    r = api.get(f"accounts({missing})")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "0x80040217", "message": f"account With Id = {missing} Does Not Exist"}}
    by_key = api.get("transactioncurrencies(isocurrencycode='ZZZ')")
    assert by_key.status_code == 404 and by_key.json()["error"]["code"] == "0x80060891"
    assert api.delete(f"accounts({missing})").status_code == 404


def test_error_annotations_only_when_asked(api):
    r = api.get(f"accounts({uuid.uuid4()})", headers={"Prefer": 'odata.include-annotations="*"'})
    error = r.json()["error"]
    assert error["@Microsoft.PowerApps.CDS.HelpLink"].startswith("http://go.microsoft.com/fwlink/?LinkID=398563")
    assert error["@Microsoft.PowerApps.CDS.InnerError.Message"] == error["message"]


def test_update_patches_only_sent_columns_and_moves_the_etag(api):
    r = api.post("accounts", json={"name": "Before", "telephone1": "1"}, headers={"Prefer": "return=representation"})
    row = r.json()
    upd = api.patch(f"accounts({row['accountid']})", json={"name": "After"}, headers={"If-Match": "*"})
    assert upd.status_code == 204
    after = api.get(f"accounts({row['accountid']})").json()
    assert after["name"] == "After" and after["telephone1"] == "1"
    assert after["@odata.etag"] != row["@odata.etag"]
    assert after["_modifiedby_value"] == after["_createdby_value"]


def test_update_only_with_if_match_star_answers_404_when_absent(api):
    missing = str(uuid.uuid4())
    r = api.patch(f"accounts({missing})", json={"name": "x"}, headers={"If-Match": "*"})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"account With Id = {missing} Does Not Exist"
    assert api.get(f"accounts({missing})").status_code == 404


def test_create_only_with_if_none_match_star_answers_412_when_present(api):
    r = api.patch("transactioncurrencies(isocurrencycode='USD')", json={"currencyname": "x"},
                  headers={"If-None-Match": "*"})
    assert r.status_code == 412
    assert r.json()["error"]["message"] == "A record with matching key values already exists."


def test_etag_mismatch_answers_412_and_a_matching_etag_updates(api):
    row = api.post("accounts", json={"name": "Etag"}, headers={"Prefer": "return=representation"}).json()
    url = f"accounts({row['accountid']})"
    stale = 'W/"1"'
    r = api.patch(url, json={"name": "x"}, headers={"If-Match": stale})
    assert r.status_code == 412
    assert r.json()["error"]["message"] == (
        "The version of the existing record doesn't match the RowVersion property provided."
    )
    assert api.delete(url, headers={"If-Match": stale}).status_code == 412
    ok = api.patch(url, json={"name": "y"}, headers={"If-Match": row["@odata.etag"]})
    assert ok.status_code == 204
    assert api.get(url, headers={"If-None-Match": ok.headers["ETag"]}).status_code == 304


def test_upsert_by_alternate_key_creates_then_updates(api):
    number = new_number()
    url = f"accounts(accountnumber='{number}',_msdyn_company_value={USMF})"
    created = api.patch(url, json={"name": "Upserted"}, headers={"Prefer": "return=representation"})
    assert created.status_code == 201
    body = created.json()
    assert body["accountnumber"] == number and body["_msdyn_company_value"] == USMF
    updated = api.patch(url, json={"name": "Upserted again"}, headers={"Prefer": "return=representation"})
    assert updated.status_code == 200 and updated.json()["accountid"] == body["accountid"]
    plain = api.patch(url, json={"name": "No representation"})
    assert plain.status_code == 204
    assert plain.headers["OData-EntityId"].endswith(f"accounts({body['accountid']})")
    by_id = str(uuid.uuid4())
    assert api.patch(f"accounts({by_id})", json={"name": "by id"}).status_code == 204
    assert api.get(f"accounts({by_id})").json()["name"] == "by id"


def test_odata_bind_by_id_alternate_key_and_composite_key(api):
    contact = api.post("contacts", json={"lastname": "Reyes"}, headers={"Prefer": "return=representation"}).json()
    r = api.post("accounts", json={
        "name": "Bound", "primarycontactid@odata.bind": f"/contacts({contact['contactid']})",
        "transactioncurrencyid@odata.bind": "transactioncurrencies(isocurrencycode='EUR')",
        "msdyn_customergroupid@odata.bind": f"/msdyn_customergroups(msdyn_groupid='10',_msdyn_company_value={USMF})",
        "msdyn_company@odata.bind": "/cdm_companies(cdm_companycode='usmf')",
    }, headers={"Prefer": 'return=representation,odata.include-annotations="*"'})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["_primarycontactid_value"] == contact["contactid"]
    assert body["_transactioncurrencyid_value"] == seed_id("transactioncurrency", "EUR")
    assert body["_msdyn_customergroupid_value"] == seed_id("msdyn_customergroup", "usmf", "10")
    assert body["_transactioncurrencyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "transactioncurrency"
    assert body["_transactioncurrencyid_value@OData.Community.Display.V1.FormattedValue"] == "Euro"
    polymorphic = api.post("contacts", json={
        "lastname": "Child", "parentcustomerid_account@odata.bind": f"/accounts({body['accountid']})",
    }, headers={"Prefer": 'return=representation,odata.include-annotations="*"'}).json()
    assert polymorphic["_parentcustomerid_value"] == body["accountid"]
    assert polymorphic["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == (
        "parentcustomerid_account"
    )


def test_bind_errors(api):
    missing = str(uuid.uuid4())
    r = api.post("accounts", json={"name": "x", "primarycontactid@odata.bind": f"/contacts({missing})"})
    assert r.status_code == 404 and r.json()["error"]["message"] == f"contact With Id = {missing} Does Not Exist"
    wrong_nav = api.post("accounts", json={"name": "x", "PrimaryContactId@odata.bind": f"/contacts({missing})"})
    assert wrong_nav.status_code == 400 and "PrimaryContactId" in wrong_nav.json()["error"]["message"]
    wrong_set = api.post("accounts", json={"name": "x", "primarycontactid@odata.bind": f"/accounts({missing})"})
    assert wrong_set.status_code in (400, 404)


def test_validation_errors_name_the_column(api):
    too_long = api.post("accounts", json={"name": "x" * 161})
    assert too_long.status_code == 400
    assert too_long.json()["error"] == {
        "code": "0x80044331",
        "message": "A validation error occurred.  The length of the 'name' attribute of the 'account' entity "
                   "exceeded the maximum allowed length of '160'.",
    }
    wrong_type = api.post("accounts", json={"name": "x", "creditlimit": "lots"})
    assert wrong_type.status_code == 400 and "'creditlimit'" in wrong_type.json()["error"]["message"]
    assert wrong_type.json()["error"]["code"] == "0x80048d19"
    bad_choice = api.post("accounts", json={"name": "x", "customertypecode": 99})
    assert bad_choice.status_code == 400 and "'customertypecode'" in bad_choice.json()["error"]["message"]
    unknown = api.post("accounts", json={"name": "x", "nosuchcolumn": 1})
    assert unknown.status_code == 400 and "'nosuchcolumn'" in unknown.json()["error"]["message"]
    out_of_range = api.post("accounts", json={"name": "x", "numberofemployees": -1})
    assert out_of_range.status_code == 400 and "'numberofemployees'" in out_of_range.json()["error"]["message"]
    required = api.post("transactioncurrencies", json={"currencyname": "No code"})
    assert required.status_code == 400 and "isocurrencycode" in required.json()["error"]["message"]
    not_json = api.post("accounts", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400


def test_duplicate_alternate_key_answers_0x80040237(api):
    r = api.post("transactioncurrencies", json={
        "isocurrencycode": "usd", "currencyname": "Again", "currencysymbol": "$", "exchangerate": 1,
        "currencyprecision": 2,
    })
    assert r.status_code == 412
    assert r.json()["error"]["code"] == "0x80040237"
    assert "already exists" in r.json()["error"]["message"]
    existing = seed_id("cdm_company", "usmf")
    dup_id = api.post("cdm_companies", json={"cdm_companyid": existing, "cdm_companycode": "zz", "cdm_name": "x"})
    assert dup_id.status_code == 412 and dup_id.json()["error"]["code"] == "0x80040237"


def test_delete_answers_204_then_404(api):
    row = api.post("accounts", json={"name": "Doomed"}, headers={"Prefer": "return=representation"}).json()
    assert api.delete(f"accounts({row['accountid']})").status_code == 204
    assert api.get(f"accounts({row['accountid']})").status_code == 404
    by_key = api.patch("transactioncurrencies(isocurrencycode='XDL')", json={
        "currencyname": "Del", "currencysymbol": "D", "exchangerate": 2, "currencyprecision": 2})
    assert by_key.status_code == 204
    assert api.delete("transactioncurrencies(isocurrencycode='XDL')").status_code == 204


def test_bearer_token_is_required(dataverse):
    r = httpx.get(dataverse.base_url + "accounts")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert httpx.get(dataverse.base_url + "accounts", headers={"Authorization": "Basic x"}).status_code == 401


def test_the_caller_is_a_systemuser_and_is_recorded_as_createdby(dataverse):
    oid = str(uuid.uuid4())
    with dataverse.client(oid=oid) as client:
        who = client.get("WhoAmI").json()
        row = client.post("accounts", json={"name": "Mine"}, headers={"Prefer": "return=representation"}).json()
        user = client.get(f"systemusers({who['UserId']})").json()
    assert row["_createdby_value"] == who["UserId"] and row["_modifiedby_value"] == who["UserId"]
    assert user["azureactivedirectoryobjectid"] == oid
    opaque = httpx.get(dataverse.base_url + "WhoAmI", headers={"Authorization": "Bearer not-a-jwt"}).json()
    again = httpx.get(dataverse.base_url + "WhoAmI", headers={"Authorization": "Bearer not-a-jwt"}).json()
    assert opaque["UserId"] == again["UserId"] != who["UserId"]


def test_disassociate_a_lookup_and_clear_a_column(api):
    contact = api.post("contacts", json={"lastname": "Linked"}, headers={"Prefer": "return=representation"}).json()
    row = api.post("accounts", json={"name": "Linked", "telephone1": "1",
                                     "primarycontactid@odata.bind": f"/contacts({contact['contactid']})"},
                   headers={"Prefer": "return=representation"}).json()
    url = f"accounts({row['accountid']})"
    assert api.delete(f"{url}/primarycontactid/$ref").status_code == 204
    assert api.delete(f"{url}/telephone1").status_code == 204
    after = api.get(url, params={"$select": "_primarycontactid_value,telephone1"}).json()
    assert after["_primarycontactid_value"] is None and after["telephone1"] is None
    rebind = api.patch(url, json={"primarycontactid@odata.bind": f"/contacts({contact['contactid']})"})
    assert rebind.status_code == 204
    assert api.patch(url, json={"primarycontactid@odata.bind": None}).status_code == 204
    assert api.get(url).json()["_primarycontactid_value"] is None


def test_responses_carry_the_rate_limit_debug_headers(api):
    r = api.get("WhoAmI")
    assert int(r.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) > 0
    assert float(r.headers["x-ms-ratelimit-time-remaining-xrm-requests"].replace(",", "")) > 0


def test_deleting_a_referenced_row_clears_lookups_and_cascades_to_parental_children(api):
    account = api.post("accounts", json={"name": "Parent"}, headers={"Prefer": "return=representation"}).json()
    child = api.post("contacts", json={
        "lastname": "Child", "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})"},
        headers={"Prefer": "return=representation"}).json()
    other = api.post("accounts", json={"name": "Billed", "msdyn_billingaccount@odata.bind":
                                       f"/accounts({account['accountid']})"},
                     headers={"Prefer": "return=representation"}).json()
    assert api.delete(f"accounts({account['accountid']})").status_code == 204
    assert api.get(f"contacts({child['contactid']})").status_code == 404
    after = api.get(f"accounts({other['accountid']})").json()
    assert after["_msdyn_billingaccount_value"] is None
    assert after["@odata.etag"] != other["@odata.etag"]


def test_impersonation_records_the_real_caller_as_on_behalf_of(dataverse):
    app_oid, user_oid = str(uuid.uuid4()), str(uuid.uuid4())
    with dataverse.client(oid=app_oid) as client:
        me = client.get("WhoAmI").json()["UserId"]
        row = client.post("accounts", json={"name": "Impersonated"}, headers={
            "CallerObjectId": user_oid, "Prefer": "return=representation"}).json()
        who = client.get("WhoAmI", headers={"CallerObjectId": user_oid}).json()["UserId"]
        legacy = client.post("accounts", json={"name": "Legacy"}, headers={
            "MSCRMCallerID": who, "Prefer": "return=representation"}).json()
        missing = client.get("WhoAmI", headers={"MSCRMCallerID": str(uuid.uuid4())})
        bad = client.get("WhoAmI", headers={"CallerObjectId": "nope"})
        user = client.get(f"systemusers({who})").json()
    assert row["_createdby_value"] == who != me and row["_createdonbehalfby_value"] == me
    assert legacy["_modifiedby_value"] == who and legacy["_modifiedonbehalfby_value"] == me
    assert user["azureactivedirectoryobjectid"] == user_oid
    assert missing.status_code == 404 and bad.status_code == 400
