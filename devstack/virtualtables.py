"""Registering virtual tables in Dataverse the Web API way: an `msdyn_odatav4ds` data source row (the service
URI, paging, timeout, the API key as a request parameter), then `POST EntityDefinitions` with the OData v4 Data
Provider, the data source and the external names. Works against the Dataverse simulator (and, with a token,
against an environment that accepts these calls). Calls are idempotent: an existing data source (by name) is
updated and an existing table is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

PROVIDER_NAME = "OData v4 Data Provider"
# EDM type of the service's property -> the AttributeMetadata type of the Dataverse column.
ATTRIBUTE_TYPES = {
    "Edm.String": "StringAttributeMetadata",
    "Edm.Int32": "IntegerAttributeMetadata",
    "Edm.Int64": "BigIntAttributeMetadata",
    "Edm.Decimal": "DecimalAttributeMetadata",
    "Edm.Double": "DoubleAttributeMetadata",
    "Edm.Boolean": "BooleanAttributeMetadata",
    "Edm.DateTimeOffset": "DateTimeAttributeMetadata",
    "Edm.DateTime": "DateTimeAttributeMetadata",
    "Edm.Guid": "UniqueIdentifierAttributeMetadata",
}


@dataclass(frozen=True)
class DataSource:
    name: str
    uri: str
    # (name, value, as a header?) — up to ten, the msdyn_parameterN* columns.
    parameters: list[tuple[str, str, bool]] = field(default_factory=list)
    server_paging: bool = False
    timeout: int = 30
    inline_count: bool = True


@dataclass(frozen=True)
class VirtualColumn:
    schema_name: str  # e.g. new_FullName
    external_name: str  # the service's property, case-sensitive
    edm_type: str
    primary_id: bool = False
    primary_name: bool = False
    max_length: int | None = None
    required: bool = False


@dataclass(frozen=True)
class VirtualTable:
    schema_name: str  # e.g. new_Person
    display_name: str
    external_name: str  # the service's entity set, case-sensitive
    columns: list[VirtualColumn]
    entity_set: str | None = None


def data_source_body(source: DataSource) -> dict[str, Any]:
    if len(source.parameters) > 10:
        raise ValueError("A data source holds at most ten request parameters.")
    body: dict[str, Any] = {
        "msdyn_name": source.name,
        "msdyn_uri": source.uri,
        "msdyn_timeout": source.timeout,
        "msdyn_paginationtype": 1 if source.server_paging else 0,
        "msdyn_returninlinecount": source.inline_count,
    }
    for n, (name, value, header) in enumerate(source.parameters, start=1):
        body.update(
            {f"msdyn_parameter{n}name": name, f"msdyn_parameter{n}value": value, f"msdyn_isparameter{n}header": header}
        )
    return body


def _label(text: str) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
        ],
    }


def entity_body(table: VirtualTable, provider_id: str, source_id: str) -> dict[str, Any]:
    attributes = []
    for column in table.columns:
        attr: dict[str, Any] = {
            "@odata.type": f"Microsoft.Dynamics.CRM.{ATTRIBUTE_TYPES[column.edm_type]}",
            "SchemaName": column.schema_name,
            "ExternalName": column.external_name,
            "DisplayName": _label(column.external_name),
            "RequiredLevel": {"Value": "ApplicationRequired" if column.required else "None"},
        }
        if column.primary_id:
            attr["IsPrimaryId"] = True
        if column.primary_name:
            attr["IsPrimaryName"] = True
        if column.edm_type == "Edm.String":
            attr["MaxLength"] = column.max_length or 4000
        attributes.append(attr)
    body: dict[str, Any] = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": table.schema_name,
        "DisplayName": _label(table.display_name),
        "DisplayCollectionName": _label(table.display_name),
        "OwnershipType": "OrganizationOwned",
        "HasActivities": False,
        "HasNotes": False,
        "TableType": "Virtual",
        "DataProviderId": provider_id,
        "DataSourceId": source_id,
        "ExternalName": table.external_name,
        "ExternalCollectionName": table.external_name,
        "Attributes": attributes,
    }
    if table.entity_set:
        body["EntitySetName"] = table.entity_set
    return body


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
        )
    return response


def provider_id(client: httpx.Client) -> str:
    found = _check(
        client.get(
            "entitydataproviders", params={"$select": "entitydataproviderid", "$filter": f"name eq '{PROVIDER_NAME}'"}
        )
    ).json()["value"]
    if not found:
        raise RuntimeError(f"This environment has no '{PROVIDER_NAME}' (entitydataproviders).")
    return str(found[0]["entitydataproviderid"])


def ensure_data_source(client: httpx.Client, source: DataSource) -> str:
    """The msdyn_odatav4ds row named `source.name`, created or brought up to date; its id."""
    body = data_source_body(source)
    name = source.name.replace("'", "''")
    found = _check(
        client.get("msdyn_odatav4ds", params={"$select": "msdyn_odatav4dsid", "$filter": f"msdyn_name eq '{name}'"})
    ).json()["value"]
    if found:
        source_id = str(found[0]["msdyn_odatav4dsid"])
        _check(client.patch(f"msdyn_odatav4ds({source_id})", json=body, headers={"If-Match": "*"}))
        return source_id
    created = _check(client.post("msdyn_odatav4ds", json=body, headers={"Prefer": "return=representation"}))
    return str(created.json()["msdyn_odatav4dsid"])


def ensure_virtual_table(client: httpx.Client, table: VirtualTable, source_id: str) -> str:
    """Creates the table unless it exists; answers its entity set name."""
    logical = table.schema_name.lower()
    existing = client.get(f"EntityDefinitions(LogicalName='{logical}')", params={"$select": "EntitySetName"})
    if existing.status_code == 200:
        return str(existing.json()["EntitySetName"])
    _check(client.post("EntityDefinitions", json=entity_body(table, provider_id(client), source_id)))
    found = _check(client.get(f"EntityDefinitions(LogicalName='{logical}')", params={"$select": "EntitySetName"}))
    return str(found.json()["EntitySetName"])


def enable_events(
    client: httpx.Client, logical_name: str, *, created: bool = True, updated: bool = True, deleted: bool = True
) -> str:
    """A virtualentitymetadata row for the table, so OnExternalCreated/Updated/Deleted can be called."""
    metadata = _check(
        client.get(f"EntityDefinitions(LogicalName='{logical_name}')", params={"$select": "MetadataId"})
    ).json()["MetadataId"]
    body = {
        "name": logical_name,
        "extensionofrecordid": metadata,
        "isonexternalcreatedenabled": created,
        "isonexternalupdatedenabled": updated,
        "isonexternaldeletedenabled": deleted,
    }
    found = _check(
        client.get(
            "virtualentitymetadatas",
            params={"$select": "virtualentitymetadataid", "$filter": f"extensionofrecordid eq {metadata}"},
        )
    ).json()["value"]
    if found:
        row_id = str(found[0]["virtualentitymetadataid"])
        _check(client.patch(f"virtualentitymetadatas({row_id})", json=body, headers={"If-Match": "*"}))
        return row_id
    created_row = _check(client.post("virtualentitymetadatas", json=body, headers={"Prefer": "return=representation"}))
    return str(created_row.json()["virtualentitymetadataid"])
