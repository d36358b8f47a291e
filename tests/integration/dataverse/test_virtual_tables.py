"""Virtual tables in the Dataverse simulator, against a small OData v4 service of the test's own
(tests/fixtures/odata_provider.py): registration the Web API way, grid reads paged both ways, filters in external
names, reads by id, create/update/delete forwarded, the API key as a header or a query parameter, the timeout,
provider errors as Dataverse errors, and OnExternal* actions firing webhook steps."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devstack.dataverse.registration import RegistrationError, register_webhook
from devstack.virtualtables import (
    DataSource,
    VirtualColumn,
    VirtualTable,
    enable_events,
    ensure_data_source,
    ensure_virtual_table,
)
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.http_receiver import HttpReceiver
from tests.fixtures.odata_provider import ODataProvider, serve

PEOPLE = 120


def person_table(schema_name: str) -> VirtualTable:
    prefix = schema_name.split("_", 1)[0]
    return VirtualTable(
        schema_name,
        "Person",
        "People",
        [
            VirtualColumn(f"{prefix}_PersonId", "Id", "Edm.Guid", primary_id=True),
            VirtualColumn(f"{prefix}_FullName", "FullName", "Edm.String", primary_name=True, max_length=100),
            VirtualColumn(f"{prefix}_Age", "Age", "Edm.Int32"),
            VirtualColumn(f"{prefix}_City", "City", "Edm.String", max_length=50),
        ],
    )


@dataclass
class Tables:
    """Entity sets of the virtual tables registered for this module, by what makes each different."""

    client_paging: str
    server_paging: str
    query_key: str
    slow: str
    query_key_server_paging: str


@pytest.fixture(scope="module")
def provider() -> Iterator[ODataProvider]:
    with serve(ODataProvider()) as running:
        running.seed(PEOPLE)
        yield running


@pytest.fixture(scope="module")
def query_provider() -> Iterator[ODataProvider]:
    with serve(ODataProvider(key_name="code", key_value="q-key", key_in_header=False)) as running:
        running.seed(7)
        yield running


@pytest.fixture(scope="module")
def slow_provider() -> Iterator[ODataProvider]:
    with serve(ODataProvider(delay=3.0)) as running:
        running.seed(3)
        yield running


@pytest.fixture(scope="module")
def api(dataverse: DataverseSim) -> Iterator[httpx.Client]:
    with dataverse.client() as client:
        yield client


@pytest.fixture(scope="module")
def tables(
    api: httpx.Client, provider: ODataProvider, query_provider: ODataProvider, slow_provider: ODataProvider
) -> Tables:
    key = [(provider.key_name, provider.key_value, True)]
    client_source = ensure_data_source(api, DataSource("people (client paging)", provider.url, key))
    server_source = ensure_data_source(api, DataSource("people (server paging)", provider.url, key, server_paging=True))
    query_source = ensure_data_source(
        api, DataSource("people (key in query)", query_provider.url, [("code", "q-key", False)])
    )
    slow_source = ensure_data_source(api, DataSource("people (slow)", slow_provider.url, key, timeout=1))
    query_server_source = ensure_data_source(
        api,
        DataSource(
            "people (key in query, server paging)", query_provider.url, [("code", "q-key", False)], server_paging=True
        ),
    )
    return Tables(
        ensure_virtual_table(api, person_table("new_Person"), client_source),
        ensure_virtual_table(api, person_table("srv_Person"), server_source),
        ensure_virtual_table(api, person_table("qry_Person"), query_source),
        ensure_virtual_table(api, person_table("slo_Person"), slow_source),
        ensure_virtual_table(api, person_table("qsp_Person"), query_server_source),
    )


def pages(api: httpx.Client, url: str, page_size: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    answer = api.get(url, headers={"Prefer": f"odata.maxpagesize={page_size}"})
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        out.append(body)
        if "@odata.nextLink" not in body:
            return out
        answer = api.get(body["@odata.nextLink"], headers={"Prefer": f"odata.maxpagesize={page_size}"})


def test_the_table_is_described_as_virtual_with_its_external_names(api: httpx.Client, tables: Tables) -> None:
    entity = api.get("EntityDefinitions(LogicalName='new_person')", params={"$expand": "Attributes"}).json()
    assert entity["TableType"] == "Virtual"
    assert entity["ExternalName"] == "People" and entity["EntitySetName"] == tables.client_paging
    assert entity["DataSourceId"]
    csdl = api.get("$metadata").text
    assert 'EntityType Name="new_person"' in csdl and 'EntitySet Name="new_persons"' in csdl
    external = {a["LogicalName"]: a["ExternalName"] for a in entity["Attributes"]}
    assert external == {"new_personid": "Id", "new_fullname": "FullName", "new_age": "Age", "new_city": "City"}


def test_a_data_source_timeout_over_120_seconds_is_refused(api: httpx.Client) -> None:
    body = {"msdyn_name": "too slow", "msdyn_uri": "http://x/", "msdyn_timeout": 121}
    answer = api.post("msdyn_odatav4ds", json=body)
    assert answer.status_code == 400, answer.text
    assert "msdyn_timeout" in answer.json()["error"]["message"]


def test_grid_paging_on_the_client_side_asks_top_and_skip_and_reaches_the_end(
    api: httpx.Client, tables: Tables, provider: ODataProvider
) -> None:
    provider.clear()
    got = pages(api, f"{tables.client_paging}?$select=new_fullname,new_age&$count=true", 50)
    rows = [r for page in got for r in page["value"]]
    assert [len(p["value"]) for p in got] == [50, 50, 20]
    assert got[0]["@odata.count"] == PEOPLE
    assert len({r["new_personid"] for r in rows}) == PEOPLE
    assert set(rows[0]) == {"new_fullname", "new_age", "new_personid"}
    calls = provider.seen("GET")
    assert [c.query.get("$top") for c in calls] == ["50", "50", "50"]
    assert [c.query.get("$skip") for c in calls] == [None, "50", "100"]
    assert calls[0].query["$select"] == "FullName,Age,Id" and calls[0].query["$count"] == "true"
    assert all(c.headers["x-api-key"] == "s3cret" and "x-api-key" not in c.query for c in calls)


def test_filter_and_orderby_reach_the_service_in_its_own_names(
    api: httpx.Client, tables: Tables, provider: ODataProvider
) -> None:
    provider.clear()
    answer = api.get(
        tables.client_paging,
        params={
            "$select": "new_fullname,new_city,new_age",
            "$filter": "new_city eq 'Oslo' and new_age gt 60",
            "$orderby": "new_age desc",
        },
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["value"]
    assert rows and all(r["new_city"] == "Oslo" and r["new_age"] > 60 for r in rows)
    assert [r["new_age"] for r in rows] == sorted((r["new_age"] for r in rows), reverse=True)
    sent = provider.seen("GET")[-1].query
    assert sent["$filter"] == "City eq 'Oslo' and Age gt 60" and sent["$orderby"] == "Age desc"
    # A literal that looks like a column name stays a literal.
    literal = api.get(tables.client_paging, params={"$filter": "new_fullname eq 'new_city'"})
    assert literal.status_code == 200 and provider.seen("GET")[-1].query["$filter"] == "FullName eq 'new_city'"
    unknown = api.get(tables.client_paging, params={"$filter": "new_nosuch eq 1"})
    assert unknown.status_code == 400 and "new_nosuch" in unknown.json()["error"]["message"]


def test_server_side_paging_follows_the_services_next_links(
    api: httpx.Client, tables: Tables, provider: ODataProvider
) -> None:
    provider.clear()
    got = pages(api, f"{tables.server_paging}?$select=srv_fullname&$count=true", 40)
    rows = [r for page in got for r in page["value"]]
    assert len({r["srv_personid"] for r in rows}) == PEOPLE and len(got) == 3
    calls = provider.seen("GET")
    top = api.get(tables.server_paging, params={"$top": "3"})  # $top alone: that many rows, no next page
    assert len(top.json()["value"]) == 3 and "@odata.nextLink" not in top.json()
    assert "$skip" not in calls[0].query and "odata.maxpagesize=40" in calls[0].headers["prefer"]
    assert [c.query.get("$skiptoken") for c in calls] == [None, "40", "80"]
    assert all(c.headers["x-api-key"] == "s3cret" for c in calls)


def test_a_key_sent_as_a_query_parameter_goes_on_every_call_next_links_too(
    api: httpx.Client, tables: Tables, query_provider: ODataProvider
) -> None:
    query_provider.clear()
    got = pages(api, tables.query_key, 5)
    assert sum(len(p["value"]) for p in got) == 7
    row_id = got[0]["value"][0]["qry_personid"]
    assert api.get(f"{tables.query_key}({row_id})").status_code == 200
    calls = query_provider.seen()
    assert len(calls) == 3 and all(c.query.get("code") == "q-key" and "code" not in c.headers for c in calls)


def test_read_by_id_and_a_missing_row(api: httpx.Client, tables: Tables, provider: ODataProvider) -> None:
    row_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "person/7"))
    answer = api.get(f"{tables.client_paging}({row_id})", params={"$select": "new_fullname"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["new_fullname"] == "Person 007" and answer.json()["new_personid"] == row_id
    assert provider.seen("GET")[-1].path == f"/odata/People({row_id})"
    missing = api.get(f"{tables.client_paging}({uuid.uuid4()})")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "0x80040217"


def test_create_update_and_delete_are_written_to_the_service(
    api: httpx.Client, tables: Tables, provider: ODataProvider
) -> None:
    created = api.post(tables.client_paging, json={"new_fullname": "Ada Lovelace", "new_age": 36, "new_city": "London"})
    assert created.status_code == 204, created.text
    row_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert provider.rows[row_id]["FullName"] == "Ada Lovelace" and provider.rows[row_id]["City"] == "London"
    assert provider.seen("POST")[-1].body == {"FullName": "Ada Lovelace", "Age": 36, "City": "London"}
    updated = api.patch(f"{tables.client_paging}({row_id})", json={"new_age": 37})
    assert updated.status_code == 204, updated.text
    assert provider.rows[row_id]["Age"] == 37 and provider.seen("PATCH")[-1].body == {"Age": 37}
    assert api.get(f"{tables.client_paging}({row_id})").json()["new_age"] == 37
    assert api.delete(f"{tables.client_paging}({row_id})").status_code == 204
    assert row_id not in provider.rows
    assert api.delete(f"{tables.client_paging}({row_id})").status_code == 404
    wrong_type = api.post(tables.client_paging, json={"new_fullname": "X", "new_age": "old"})
    assert wrong_type.status_code == 400 and "new_age" in wrong_type.json()["error"]["message"]


def test_the_services_error_message_reaches_the_caller(
    api: httpx.Client, tables: Tables, provider: ODataProvider
) -> None:
    refused = api.post(tables.client_paging, json={"new_age": 3}, headers={"Prefer": 'odata.include-annotations="*"'})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "0x80040265" and "FullName is required." in error["message"]
    assert "FullName is required." in error["@Microsoft.PowerApps.CDS.TraceText"]
    provider.fail_with = 503
    try:
        down = api.get(tables.client_paging, params={"$top": "5"})
    finally:
        provider.fail_with = None
    assert down.status_code == 400
    assert "503" in down.json()["error"]["message"]
    assert "down for maintenance" in down.json()["error"]["message"]


def test_the_data_source_timeout_is_honoured(api: httpx.Client, tables: Tables, slow_provider: ODataProvider) -> None:
    # The service would answer 200 after 3 s; the data source gives it 1 s, so the read fails with the timeout.
    answer = api.get(tables.slow, params={"$top": "5"})
    assert answer.status_code == 400, answer.text
    assert "within 1 seconds" in answer.json()["error"]["message"]
    assert slow_provider.seen("GET")  # it was asked


def test_on_external_actions_fire_the_steps_registered_on_them(
    api: httpx.Client, tables: Tables, dataverse: DataverseSim, receiver: HttpReceiver
) -> None:
    created_step = register_webhook(api, receiver.url("/vt-created"), entity="new_person", message="OnExternalCreated")
    updated_step = register_webhook(api, receiver.url("/vt-updated"), entity="new_person", message="OnExternalUpdated")
    try:
        row_id = str(uuid.uuid4())
        target = {
            "@odata.type": "Microsoft.Dynamics.CRM.new_person",
            "new_personid": row_id,
            "new_fullname": "Grace Hopper",
        }
        not_enabled = api.post("OnExternalCreated", json={"Target": target})
        assert not_enabled.status_code == 400 and "isonexternalcreatedenabled" in not_enabled.json()["error"]["message"]
        enable_events(api, "new_person", deleted=False)
        assert api.post("OnExternalCreated", json={"Target": target}).status_code == 204
        bound = api.post(
            f"{tables.client_paging}/Microsoft.Dynamics.CRM.OnExternalUpdated",
            json={
                "Target": {**target, "new_age": 85},
                "ChangedFields": ["new_age"],
                "PreImage": {**target, "new_age": 84},
            },
        )
        assert bound.status_code == 204, bound.text
        deleted = api.post("OnExternalDeleted", json={"Target": target})
        assert deleted.status_code == 400 and "isonexternaldeletedenabled" in deleted.json()["error"]["message"]
        dataverse.drain()
        [created] = receiver.wait_for("/vt-created", 1)
        [updated] = receiver.wait_for("/vt-updated", 1)
        assert created.body["MessageName"] == "OnExternalCreated"
        assert created.body["PrimaryEntityName"] == "new_person" and created.body["PrimaryEntityId"] == row_id
        sent = {a["key"]: a["value"] for a in created.body["InputParameters"][0]["value"]["Attributes"]}
        assert sent["new_fullname"] == "Grace Hopper"
        assert updated.body["MessageName"] == "OnExternalUpdated"
        inputs = {p["key"]: p["value"] for p in updated.body["InputParameters"]}
        assert inputs["ChangedFields"] == ["new_age"]
        assert {a["key"]: a["value"] for a in inputs["PreImage"]["Attributes"]}["new_age"] == 84
        assert created.headers["x-ms-dynamics-request-name"] == "OnExternalCreated"
    finally:
        created_step.remove(api)
        updated_step.remove(api)


def test_a_synchronous_step_on_an_external_event_is_refused(
    api: httpx.Client, tables: Tables, receiver: HttpReceiver
) -> None:
    with pytest.raises(RegistrationError, match="asynchronous"):
        register_webhook(api, receiver.url("/vt-sync"), entity="new_person", message="OnExternalCreated", mode=0)
    url = receiver.url("/vt-sync")
    for endpoint in api.get("serviceendpoints", params={"$filter": f"url eq '{url}'"}).json()["value"]:
        api.delete(f"serviceendpoints({endpoint['serviceendpointid']})")  # the endpoint made before the refusal


def test_a_query_string_key_echoed_in_the_services_next_links_is_not_handed_to_the_client(
    api: httpx.Client, tables: Tables, query_provider: ODataProvider
) -> None:
    query_provider.clear()
    got = pages(api, tables.query_key_server_paging, 3)
    assert sum(len(p["value"]) for p in got) == 7 and len(got) == 3
    links = [p["@odata.nextLink"] for p in got if "@odata.nextLink" in p]
    assert links and not any("q-key" in base64_texts(link) for link in links)
    assert all(c.query.get("code") == "q-key" for c in query_provider.seen())  # yet every call carried it
    assert [c.query.get("$skiptoken") for c in query_provider.seen()] == [None, "3", "6"]


def base64_texts(link: str) -> str:
    """The link and the decoded $skiptoken it carries."""
    token = httpx.URL(link).params.get("$skiptoken", "")
    return link + base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode(errors="replace")
