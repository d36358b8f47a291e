"""Metadata formats (EntityDefinitions JSON, F&O CSDL) and the checks made against them."""

import json

import pytest

from core.connectors.metadata import (
    MetadataError,
    dataverse_api_url,
    fno_data_url,
    parse_dataverse_definition,
    parse_fno_csdl,
)
from core.maps import check_metadata, load_maps
from core.maps.catalog import Column, EntitySchema

ACCOUNT = {
    "LogicalName": "account", "EntitySetName": "accounts", "PrimaryIdAttribute": "accountid",
    "Attributes": [
        {"LogicalName": "accountid", "AttributeType": "Uniqueidentifier", "IsPrimaryId": True,
         "RequiredLevel": {"Value": "SystemRequired"}, "IsValidForCreate": True},
        {"@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata", "LogicalName": "name",
         "AttributeType": "String", "MaxLength": 160, "RequiredLevel": {"Value": "ApplicationRequired"},
         "IsValidForCreate": True, "IsValidForUpdate": True},
        {"LogicalName": "creditlimit", "AttributeType": "Money", "Precision": 4,
         "RequiredLevel": {"Value": "None"}},
        {"LogicalName": "primarycontactid", "AttributeType": "Lookup", "Targets": ["contact"]},
        {"LogicalName": "parentcustomerid", "AttributeType": "Customer", "Targets": ["account", "contact"]},
        {"LogicalName": "ownerid", "AttributeType": "Owner", "RequiredLevel": {"Value": "SystemRequired"},
         "IsValidForCreate": True},
        {"LogicalName": "birthdate", "AttributeType": "DateTime", "Format": "DateOnly"},
        {"LogicalName": "modifiedon", "AttributeType": "DateTime", "IsValidForCreate": False,
         "IsValidForUpdate": False},
        {"LogicalName": "customertypecode", "AttributeType": "Picklist"},
    ],
}

CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>
<Schema Namespace="Microsoft.Dynamics.DataEntities" xmlns="http://docs.oasis-open.org/odata/ns/edm">
<EntityType Name="CustomerV3"><Key><PropertyRef Name="dataAreaId"/><PropertyRef Name="CustomerAccount"/></Key>
<Property Name="dataAreaId" Type="Edm.String" Nullable="false" MaxLength="4"/>
<Property Name="CustomerAccount" Type="Edm.String" Nullable="false" MaxLength="20"/>
<Property Name="CreditLimit" Type="Edm.Decimal" Nullable="false" Precision="32" Scale="6"/>
<Property Name="CreditLimitIsMandatory" Type="Microsoft.Dynamics.DataEntities.NoYes" Nullable="false"/>
<Property Name="PartyNumber" Type="Edm.String" MaxLength="40">
<Annotation Term="Org.OData.Core.V1.Computed" Bool="true"/></Property>
</EntityType>
<EnumType Name="NoYes"><Member Name="Yes" Value="1"/><Member Name="No" Value="0"/></EnumType>
<EntityContainer Name="Resources">
<EntitySet Name="CustomersV3" EntityType="Microsoft.Dynamics.DataEntities.CustomerV3"/>
</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"""


def test_entity_definitions_to_columns():
    schema = parse_dataverse_definition(ACCOUNT)
    cols = schema.columns
    assert schema.entity_set == "accounts"
    assert cols["name"] == Column("name", "string", "String", max_length=160, required=True)
    assert cols["creditlimit"].type == "decimal" and cols["creditlimit"].scale == 4
    assert not cols["accountid"].required and cols["accountid"].type == "guid"
    assert not cols["ownerid"].required  # the platform sets the owner
    assert cols["birthdate"].type == "date" and cols["modifiedon"].read_only
    assert cols["customertypecode"].type == "choice"
    # Without ManyToOneRelationships, navigation names follow Dataverse's convention.
    assert schema.navigation["primarycontactid"] == ("primarycontactid", "contact")
    assert schema.navigation["parentcustomerid_account"] == ("parentcustomerid", "account")
    with pytest.raises(MetadataError, match="expanded Attributes"):
        parse_dataverse_definition({"LogicalName": "account"})


def test_csdl_to_columns():
    (name, schema), = parse_fno_csdl(CSDL).items()
    assert name == "CustomersV3" and schema.keys == (("dataAreaId", "CustomerAccount"),)
    assert schema.enums == {"NoYes": ("No", "Yes")}  # in value order
    assert schema.columns["CreditLimitIsMandatory"].enum_type == "NoYes"
    assert schema.columns["CreditLimit"].scale == 6
    assert schema.columns["PartyNumber"].read_only
    assert schema.columns["dataAreaId"].required and not schema.columns["CreditLimit"].required
    with pytest.raises(MetadataError, match="DTD"):
        parse_fno_csdl('<!DOCTYPE x [<!ENTITY a "b">]><x/>')
    with pytest.raises(MetadataError, match="not valid XML"):
        parse_fno_csdl("<edmx")


def test_urls_accept_environment_roots():
    assert dataverse_api_url("https://contoso.crm.dynamics.com") == "https://contoso.crm.dynamics.com/api/data/v9.2/"
    assert dataverse_api_url("http://h/api/data/v9.2/") == "http://h/api/data/v9.2/"
    assert fno_data_url("https://contoso.operations.dynamics.com/") == "https://contoso.operations.dynamics.com/data/"
    assert fno_data_url("http://h/data/") == "http://h/data/"


def test_checks_against_schemas(tmp_path):
    data = {
        "name": "customers", "version": "1", "primary": "fno",
        "fno": {"entity_set": "CustomersV3", "key": ["CustomerAccount"]},
        "dataverse": {"table": "account", "entity_set": "accountz", "primary_id": "accountid",
                      "key": ["accountnumber"]},
        "fields": [
            {"fno": "CustomerAccount", "dataverse": "accountnumber", "direction": "both", "type": "string"},
            {"fno": "PartyNumber", "dataverse": "name", "direction": "both", "type": "string",
             "transform": [{"type": "fit_length", "max_length": 200}]},
            {"fno": "CreditLimit", "dataverse": "creditlimit", "direction": "both", "type": "decimal",
             "transform": [{"type": "decimal_scale", "scale": 10}]},
        ],
    }
    path = tmp_path / "customers.json"
    path.write_text(json.dumps(data))
    loaded = load_maps([path]).maps
    account = parse_dataverse_definition({**ACCOUNT, "Attributes": [
        *ACCOUNT["Attributes"], {"LogicalName": "accountnumber", "AttributeType": "String", "MaxLength": 100}]})
    fno = parse_fno_csdl(CSDL)
    found = {(p.field, p.severity, p.message) for p in check_metadata(loaded, fno=fno, dataverse={"account": account})}
    assert (None, "error", "the entity set of 'account' is 'accounts', not 'accountz'") in found
    assert (None, "error", "the F&O key of CustomersV3 is ['dataAreaId', 'CustomerAccount'], the map says "
                           "['CustomerAccount']") in found
    assert ("PartyNumber", "error", "F&O field 'PartyNumber' is read-only but the map writes it") in found
    assert ("name", "error", "fit_length 200 exceeds the maximum length 160") in found
    assert ("creditlimit", "warning", "Dataverse keeps 4 decimal places; the map sends more") in found
    assert ("CustomerAccount", "warning", "F&O allows 20 characters, the source 100: longer values will be refused "
                                          "(add fit_length to truncate)") in found
    missing = check_metadata(loaded, fno={}, dataverse={"other": EntitySchema("dataverse", "other", {})})
    assert {p.message for p in missing} == {"F&O has no public entity set 'CustomersV3'",
                                            "Dataverse has no table 'account'"}
