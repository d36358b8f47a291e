"""EntityDefinitions metadata over HTTP, and the shipped maps (maps/*.json, read as plain JSON) against the
simulator's schema: every Dataverse table, column, alternate key, company lookup, lookup navigation
property and filter they name must exist, both in schema.json and in the live metadata."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from devstack.dataverse.odata_filter import parse_filter
from devstack.dataverse.schema import load_schema

pytestmark = pytest.mark.integration
MAPS = sorted(p for p in (Path(__file__).resolve().parents[3] / "maps").glob("*.json") if p.name != "map.schema.json")


@pytest.fixture(scope="module")
def api(dataverse) -> httpx.Client:
    with dataverse.client() as client:
        yield client


def test_entity_definitions_list_and_filter(api):
    listed = api.get("EntityDefinitions", params={"$select": "LogicalName,EntitySetName"}).json()["value"]
    names = {e["LogicalName"]: e["EntitySetName"] for e in listed}
    assert names["account"] == "accounts" and names["msdyn_customergroup"] == "msdyn_customergroups"
    one = api.get("EntityDefinitions", params={
        "$select": "LogicalName,EntitySetName,PrimaryIdAttribute", "$filter": "LogicalName eq 'contact'"}).json()
    assert [(e["EntitySetName"], e["PrimaryIdAttribute"]) for e in one["value"]] == [("contacts", "contactid")]


def test_attributes_carry_types_lengths_precision_required_level_and_targets(api):
    entity = api.get("EntityDefinitions(LogicalName='account')", params={"$expand": "Attributes,Keys"}).json()
    attrs = {a["LogicalName"]: a for a in entity["Attributes"]}
    assert attrs["name"]["AttributeType"] == "String" and attrs["name"]["MaxLength"] == 160
    assert attrs["name"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert attrs["creditlimit"]["AttributeType"] == "Money" and attrs["creditlimit"]["Precision"] == 10
    assert attrs["msdyn_company"]["AttributeType"] == "Lookup" and attrs["msdyn_company"]["Targets"] == ["cdm_company"]
    assert attrs["customertypecode"]["AttributeType"] == "Picklist"
    assert attrs["accountid"]["IsPrimaryId"] is True
    assert [k["KeyAttributes"] for k in entity["Keys"]] == [["accountnumber", "msdyn_company"]]
    single = api.get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='parentcustomerid')").json()
    assert single["AttributeType"] == "Customer" and single["Targets"] == ["account", "contact"]
    options = api.get(
        "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet"}).json()["value"]
    customer_type = next(a for a in options if a["LogicalName"] == "customertypecode")
    assert {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in customer_type["OptionSet"]["Options"]}[3] \
        == "Customer"
    relationships = api.get("EntityDefinitions(LogicalName='contact')/ManyToOneRelationships").json()["value"]
    navs = {r["ReferencingEntityNavigationPropertyName"] for r in relationships}
    assert {"parentcustomerid_account", "parentcustomerid_contact", "msdyn_company"} <= navs
    assert api.get("EntityDefinitions(LogicalName='nosuch')").status_code == 404


def test_maps_exist():
    assert len(MAPS) >= 9


@pytest.mark.parametrize("path", MAPS, ids=[p.stem for p in MAPS])
def test_shipped_map_matches_the_schema_and_the_live_metadata(path: Path, api):
    schema = load_schema()
    maps = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in MAPS}
    doc = json.loads(path.read_text())
    dv = doc["dataverse"]
    assert dv["table"] in schema.tables, f"{path.name}: table {dv['table']}"
    table = schema.tables[dv["table"]]
    assert dv["entity_set"] == table.entity_set, f"{path.name}: entity set"
    assert dv.get("primary_id", table.primary_id) == table.primary_id, f"{path.name}: primary id"
    for field in doc["fields"]:
        name = field.get("dataverse")
        if name:
            assert name in table.columns and not table.columns[name].is_lookup, f"{path.name}: column {name}"
    if doc.get("company"):
        company = table.columns.get(doc["company"]["dataverse"])
        assert company is not None and company.targets == ["cdm_company"], f"{path.name}: company lookup"
    key_columns = []
    for part in dv["key"]:
        lookup, _, remote = part.partition(".")
        assert lookup in table.columns, f"{path.name}: key column {lookup}"
        if remote:
            column = table.columns[lookup]
            assert column.is_lookup and remote in schema.tables[column.targets[0]].columns, f"{path.name}: {part}"
        key_columns.append(lookup)
    assert any(set(k.columns) == set(key_columns) for k in table.keys), f"{path.name}: no alternate key {key_columns}"
    if dv.get("filter"):
        parse_filter(dv["filter"], table)
    for lookup in doc.get("lookups", []):
        assert lookup["dataverse"] in table.navigation, f"{path.name}: navigation property {lookup['dataverse']}"
        _, target = table.navigation[lookup["dataverse"]]
        assert target == maps[lookup["map"]]["dataverse"]["table"], f"{path.name}: {lookup['dataverse']} target"
    # The same names through the live metadata (what the map validator's live check reads).
    live = api.get(f"EntityDefinitions(LogicalName='{table.logical_name}')",
                   params={"$select": "EntitySetName", "$expand": "Attributes($select=LogicalName),Keys"}).json()
    assert live["EntitySetName"] == dv["entity_set"]
    live_attrs = {a["LogicalName"] for a in live["Attributes"]}
    named = {f["dataverse"] for f in doc["fields"] if f.get("dataverse")} | set(key_columns)
    assert named <= live_attrs
    assert any(set(k["KeyAttributes"]) == set(key_columns) for k in live["Keys"])
    if dv.get("filter"):
        assert api.get(dv["entity_set"], params={"$filter": dv["filter"], "$top": "1"}).status_code == 200
