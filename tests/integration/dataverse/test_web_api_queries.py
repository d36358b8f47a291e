"""Queries, paging and change tracking over HTTP (reference §2.6, §2.7)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devstack.dataverse.seed import seed_id

pytestmark = pytest.mark.integration
USMF = seed_id("cdm_company", "usmf")
DEMF = seed_id("cdm_company", "demf")


@pytest.fixture(scope="module")
def api(dataverse) -> httpx.Client:
    with dataverse.client() as client:
        yield client


def values(api: httpx.Client, entity_set: str, **params: str) -> list[dict]:
    r = api.get(entity_set, params=params)
    assert r.status_code == 200, r.text
    return r.json()["value"]


def test_select_returns_only_the_asked_columns_plus_the_primary_id(api):
    rows = values(api, "accounts", **{"$select": "name,_msdyn_company_value", "$top": "3"})
    assert len(rows) == 3
    assert all(set(r) == {"@odata.etag", "name", "_msdyn_company_value", "accountid"} for r in rows)
    r = api.get("accounts", params={"$select": "msdyn_company"})
    assert r.status_code == 400 and "msdyn_company" in r.json()["error"]["message"]


def test_filter_operators(api):
    usmf = values(api, "accounts", **{"$filter": f"_msdyn_company_value eq {USMF}", "$select": "accountnumber"})
    seeded = [r for r in usmf if r["accountnumber"] and r["accountnumber"][:3] in ("US-", "DE-")]
    assert len(seeded) == 60 and all(r["accountnumber"].startswith("US-") for r in seeded)
    two = values(api, "accounts", **{
        "$filter": "accountnumber eq 'US-001' or accountnumber eq 'de-002'", "$select": "accountnumber"})
    assert sorted(r["accountnumber"] for r in two) == ["DE-002", "US-001"]
    assert values(api, "accounts", **{"$filter": "accountnumber ne 'US-001' and startswith(accountnumber,'US-00')",
                                      "$select": "accountnumber"}).__len__() == 8
    contains = values(api, "msdyn_customergroups", **{"$filter": "contains(msdyn_description,'major')"})
    assert len(contains) == 2
    ranged = values(api, "products", **{"$filter": "price ge 100 and price lt 1000", "$select": "price"})
    assert ranged and all(100 <= r["price"] < 1000 for r in ranged)
    strict = values(api, "products", **{"$filter": "price gt 100 and price le 1000", "$select": "price"})
    assert strict and all(100 < r["price"] <= 1000 for r in strict)
    negated = values(api, "transactioncurrencies", **{"$filter": "not (isocurrencycode eq 'USD')"})
    assert "USD" not in {r["isocurrencycode"] for r in negated}
    nulls = values(api, "contacts", **{"$filter": "msdyn_contactpersonid eq null", "$select": "lastname"})
    assert all(r["contactid"] for r in nulls)
    flags = values(api, "accounts", **{"$filter": "msdyn_creditlimitismandatory eq true", "$select": "accountnumber"})
    assert len(flags) == 20 + 13
    dated = values(api, "accounts", **{"$filter": "createdon lt 2026-01-02T00:00:00Z", "$select": "name"})
    assert len(dated) >= 100


def test_filter_errors_name_the_problem(api):
    r = api.get("accounts", params={"$filter": "nosuch eq 1"})
    assert r.status_code == 400 and "nosuch" in r.json()["error"]["message"]
    assert api.get("accounts", params={"$filter": "name eq"}).status_code == 400
    assert api.get("accounts", params={"$skip": "10"}).status_code == 400


def test_orderby_top_and_count(api):
    rows = values(api, "transactioncurrencies", **{"$orderby": "isocurrencycode desc", "$select": "isocurrencycode",
                                                   "$filter": "isocurrencycode ne 'XTS'"})
    codes = [r["isocurrencycode"] for r in rows]
    assert codes == sorted(codes, reverse=True)
    top = values(api, "accounts", **{"$orderby": "accountnumber asc", "$top": "2", "$select": "accountnumber",
                                     "$filter": "startswith(accountnumber,'DE-')"})
    assert [r["accountnumber"] for r in top] == ["DE-001", "DE-002"]
    counted = api.get("cdm_companies", params={"$count": "true"}).json()
    assert counted["@odata.count"] == len(counted["value"]) >= 2


def test_server_paging_with_maxpagesize_and_an_opaque_next_link(api):
    seen: list[str] = []
    url = "contacts?$select=lastname&$filter=msdyn_contactpersonid ne null"
    pages = 0
    while url:
        r = api.get(url, headers={"Prefer": "odata.maxpagesize=75"})
        assert r.status_code == 200
        body = r.json()
        assert len(body["value"]) <= 75
        seen += [row["contactid"] for row in body["value"]]
        pages += 1
        url = body.get("@odata.nextLink")
        if url:
            assert "$skiptoken=" in url and "$select=lastname" in url
    assert pages == 3 and len(seen) == len(set(seen)) == 200
    assert r.headers["Preference-Applied"] == "odata.maxpagesize=75"
    ignored_top = api.get("contacts?$top=3", headers={"Prefer": "odata.maxpagesize=5"}).json()
    assert len(ignored_top["value"]) == 5


def test_change_tracking_initial_load_then_delta_with_changes_and_deletions(api):
    first = api.get("msdyn_vendorgroups?$select=msdyn_vendorgroup,msdyn_description",
                    headers={"Prefer": "odata.track-changes"})
    assert first.status_code == 200
    assert "odata.track-changes" in first.headers["Preference-Applied"]
    body = first.json()
    assert len(body["value"]) >= 8
    delta_link = body["@odata.deltaLink"]
    token = parse_qs(urlsplit(delta_link).query)["$deltatoken"][0]
    assert "!" in token
    changed_id = seed_id("msdyn_vendorgroup", "usmf", "10")
    assert api.patch(f"msdyn_vendorgroups({changed_id})", json={"msdyn_description": "Changed"}).status_code == 204
    new = api.post("msdyn_vendorgroups", json={
        "msdyn_vendorgroup": "77", "msdyn_company@odata.bind": f"/cdm_companies({DEMF})"},
        headers={"Prefer": "return=representation"}).json()
    gone = api.post("msdyn_vendorgroups", json={
        "msdyn_vendorgroup": "78", "msdyn_company@odata.bind": f"/cdm_companies({DEMF})"},
        headers={"Prefer": "return=representation"}).json()
    assert api.delete(f"msdyn_vendorgroups({gone['msdyn_vendorgroupid']})").status_code == 204
    delta = api.get(delta_link)
    assert delta.status_code == 200
    rows = delta.json()["value"]
    changed = [r for r in rows if "msdyn_vendorgroupid" in r]
    deleted = [r for r in rows if r.get("reason") == "deleted"]
    assert {r["msdyn_vendorgroupid"] for r in changed} == {changed_id, new["msdyn_vendorgroupid"]}
    assert next(r for r in changed if r["msdyn_vendorgroupid"] == changed_id)["msdyn_description"] == "Changed"
    assert set(changed[0]) <= {"@odata.etag", "msdyn_vendorgroupid", "msdyn_vendorgroup", "msdyn_description"}
    assert deleted == [{"@odata.context": deleted[0]["@odata.context"], "id": gone["msdyn_vendorgroupid"],
                        "reason": "deleted"}]
    assert deleted[0]["@odata.context"].endswith("$metadata#msdyn_vendorgroups/$deletedEntity")
    assert rows.index(deleted[0]) == len(rows) - 1  # changes first, then deletions
    again = api.get(delta.json()["@odata.deltaLink"]).json()
    assert again["value"] == []


def test_change_tracking_rejects_filter_and_untracked_tables(api):
    r = api.get("accounts?$filter=name eq 'x'", headers={"Prefer": "odata.track-changes"})
    assert r.status_code == 400
    assert api.get("annotations", headers={"Prefer": "odata.track-changes"}).status_code == 400


def test_relationship_navigation_and_count_segment(api):
    endpoint = api.post("serviceendpoints", json={
        "name": "nav", "url": "http://127.0.0.1:9/x", "contract": 8, "authtype": 4, "authvalue": "k"},
        headers={"Prefer": "return=representation"}).json()
    assert "authvalue" not in endpoint and endpoint["isauthvalueset"] is True
    listed = api.get(f"serviceendpoints({endpoint['serviceendpointid']})/serviceendpoint_sdkmessageprocessingstep")
    assert listed.status_code == 200 and listed.json()["value"] == []
    api.delete(f"serviceendpoints({endpoint['serviceendpointid']})")
    count = api.get("cdm_companies/$count")
    assert count.status_code == 200 and int(count.text) >= 2
    missing = api.get(f"accounts({uuid.uuid4()})/name")
    assert missing.status_code == 404


def test_expand_single_valued_navigation_properties(api):
    account = seed_id("account", "usmf", "US-002")
    r = api.get(f"accounts({account})", params={
        "$select": "name", "$expand": "msdyn_company($select=cdm_companycode),primarycontactid($select=lastname)"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["msdyn_company"]["cdm_companycode"] == "usmf"
    assert set(body["msdyn_company"]) == {"@odata.etag", "cdm_companycode", "cdm_companyid"}
    assert body["primarycontactid"]["contactid"] == seed_id("contact", "usmf", "USC0020")
    listed = api.get("accounts", params={"$select": "accountnumber", "$filter": "accountnumber eq 'DE-003'",
                                         "$expand": "transactioncurrencyid($select=isocurrencycode)"}).json()
    assert listed["value"][0]["transactioncurrencyid"]["isocurrencycode"] == "EUR"
    empty = api.post("accounts?$expand=msdyn_company", json={"name": "no company"},
                     headers={"Prefer": "return=representation"})
    assert api.get(empty.headers["OData-EntityId"].split("/v9.2/")[1], params={"$expand": "msdyn_company"}).json()[
        "msdyn_company"] is None
    assert api.get(f"accounts({account})", params={"$expand": "nosuch"}).status_code == 400


def test_alternate_key_values_with_url_unsafe_characters_are_rejected(api):
    r = api.patch("products(productnumber='A%2BB')", json={"name": "plus"})
    assert r.status_code == 400 and "productnumber" in r.json()["error"]["message"]
    created = api.post("products", json={"name": "plus", "productnumber": "A+B"})
    assert created.status_code == 204
    found = api.get("products", params={"$filter": "productnumber eq 'A+B'"}).json()["value"]
    assert len(found) == 1


def test_dataverse_query_functions(api):
    rows = values(api, "accounts", **{
        "$filter": "Microsoft.Dynamics.CRM.In(PropertyName='accountnumber',"
                   "PropertyValues=['US-001','DE-002',\"US-003\"])",
        "$select": "accountnumber"})
    assert sorted(r["accountnumber"] for r in rows) == ["DE-002", "US-001", "US-003"]
    usmf = seed_id("cdm_company", "usmf")
    not_in = values(api, "cdm_companies", **{
        "$filter": f"Microsoft.Dynamics.CRM.NotIn(PropertyName='cdm_companyid',PropertyValues=['{usmf}'])"})
    assert usmf not in {r["cdm_companyid"] for r in not_in} and not_in
    between = values(api, "msdyn_paymentterms", **{
        "$filter": "Microsoft.Dynamics.CRM.Between(PropertyName='msdyn_days',PropertyValues=['10','30'])"})
    assert between and all(10 <= r["msdyn_days"] <= 30 for r in between)
    nulls = values(api, "contacts", **{
        "$filter": "Microsoft.Dynamics.CRM.NotNull(PropertyName='msdyn_contactpersonid') "
                   "and startswith(msdyn_contactpersonid,'DE')"})
    assert len(nulls) == 80
    unknown = api.get("accounts", params={
        "$filter": "Microsoft.Dynamics.CRM.LastXDays(PropertyName='createdon',PropertyValue=3)"})
    assert unknown.status_code == 400 and "LastXDays" in unknown.json()["error"]["message"]


def test_delta_responses_page_and_end_with_a_delta_link(api):
    first = api.get("products?$select=name", headers={"Prefer": "odata.track-changes"}).json()
    delta_link = first["@odata.deltaLink"]
    prefix = "DL-" + uuid.uuid4().hex[:6]
    made = api.post("products/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [
        {"name": f"d{i}", "productnumber": f"{prefix}-{i}"} for i in range(7)]}).json()["Ids"]
    api.delete(f"products({made[0]})")
    seen, url, pages = [], delta_link, 0
    while True:
        body = api.get(url, headers={"Prefer": "odata.maxpagesize=3"}).json()
        pages += 1
        seen += body["value"]
        if "@odata.nextLink" in body:
            url = body["@odata.nextLink"]
            # A change made while paging goes to the next delta, not into these pages.
            api.patch(f"products({made[1]})", json={"name": f"late {pages}"})
            continue
        final = body["@odata.deltaLink"]
        break
    assert pages == 3
    assert [r["productid"] for r in seen if "productid" in r] == made[1:]
    assert [r["id"] for r in seen if r.get("reason") == "deleted"] == [made[0]]
    later = api.get(final).json()
    assert [(r["productid"], r["name"]) for r in later["value"]] == [(made[1], "late 2")]
