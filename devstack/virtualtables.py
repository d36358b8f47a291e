"""Registering virtual tables in Dataverse the Web API way: an `msdyn_odatav4ds` data source row (the service
URI, paging, timeout, the API key as a request parameter), then `POST EntityDefinitions` with the OData v4 Data
Provider, the data source and the external names. Works against the Dataverse simulator (and, with a token,
against an environment that accepts these calls). Calls are idempotent: an existing data source (by name) is
updated and an existing table is left as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("devstack.virtualtables")
ROOT = Path(__file__).resolve().parent.parent

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


# --- the demo virtual tables of the local stack -----------------------------------------------------------------

DEMO_PREFIX = "dwvt"
DEMO_SOURCE = "dw-oss virtual tables (local host)"


def dataverse_table(definition: Any, prefix: str = DEMO_PREFIX) -> VirtualTable:
    """The Dataverse side of one of the engine's definitions (core.virtual.model.VirtualTable): a table
    `<prefix>_<entity_type>` whose columns carry the service's property names as external names."""
    key = definition.key
    id_name = key.column if key.kind == "column" else key.id_name
    columns = [VirtualColumn(f"{prefix}_{id_name}", id_name, "Edm.Guid", primary_id=True)]
    strings = [c for c in definition.columns if c.type == "Edm.String" and c.name != id_name]
    named = next((c for c in strings if not c.nullable), strings[0] if strings else None)
    for column in definition.columns:
        if column.name == id_name:
            continue
        columns.append(
            VirtualColumn(
                f"{prefix}_{column.name}",
                column.name,
                column.type,
                primary_name=named is not None and column.name == named.name,
                max_length=column.max_length,
                required=not column.nullable,
            )
        )
    return VirtualTable(f"{prefix}_{definition.entity_type}", definition.entity_type, definition.entity_set, columns)


def register_definitions(
    client: httpx.Client,
    service_root: str,
    key: str,
    definitions: list[Any],
    *,
    key_header: str = "x-vt-key",
    as_header: bool = True,
    server_paging: bool = True,
    source_name: str = DEMO_SOURCE,
    prefix: str = DEMO_PREFIX,
) -> dict[str, str]:
    """One data source for the engine's OData endpoint (the key as its request parameter: a header, or with
    `as_header=False` a query-string parameter such as `vtkey`; server-side paging by default: the endpoint pages with
    next links) and a virtual table `<prefix>_<entity type>` per definition; {external entity set: Dataverse entity
    set}."""
    source = DataSource(source_name, service_root, [(key_header, key, as_header)], server_paging=server_paging)
    source_id = ensure_data_source(client, source)
    sets: dict[str, str] = {}
    for definition in definitions:
        table = dataverse_table(definition, prefix)
        sets[definition.entity_set] = ensure_virtual_table(client, table, source_id)
        if getattr(definition, "notify", None) is not None:
            # the engine tells Dataverse about this table's changes at the source: let it (else every call is refused)
            enable_events(client, table.schema_name.lower())
    return sets


def _demo_data(settings: dict[str, str], fresh: bool) -> list[str]:
    """The demo sources the host reads: the SQLite file (made when missing, or anew with --fresh) and the
    Warehouses table in Azurite (made when missing). Answers the entity sets whose data could not be made."""
    import asyncio

    from devstack.virtualdata import create_sql, seed_tables

    skipped: list[str] = []
    logging.getLogger("azure").setLevel(logging.WARNING)  # the Tables SDK logs every request at INFO
    url = settings.get("VIRTUAL_TABLES_SQL_URL", "")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path = path if path.is_absolute() else ROOT / path
        if fresh or not path.exists():
            create_sql(f"sqlite:///{path}")
    connection = settings.get("TABLE_STORAGE_CONNECTION", "")
    try:
        from azure.data.tables import TableServiceClient

        with TableServiceClient.from_connection_string(connection) as service:
            present = any(True for _ in service.query_tables("TableName eq 'vtwarehouses'"))
        if fresh or not present:
            asyncio.run(seed_tables(connection))
    except Exception as error:  # the other demo tables still work without Table Storage
        log.warning("virtual tables: no demo warehouses in Table Storage (%s)", error)
        skipped.append("Warehouses")
    return skipped


def local_demo(
    settings: dict[str, str], dataverse_base: str, host_url: str, token: str, *, fresh: bool = False
) -> list[str]:
    """`make run`: demo data, the demo virtual tables registered in the Dataverse simulator against the local host's
    /api/odata/ (key as a header request parameter), and the lines to print."""
    from core.virtual.catalog import DefinitionError, load_folder

    key = settings.get("VIRTUAL_TABLES_KEY")
    if not key:
        return ["Virtual tables: VIRTUAL_TABLES_KEY is not set, so the OData endpoint refuses every call (401)."]
    header = settings.get("VIRTUAL_TABLES_KEY_HEADER") or "x-vt-key"
    service_root = f"{host_url}/api/odata/"
    try:
        definitions = load_folder(ROOT / (settings.get("VIRTUAL_TABLES_PATH") or "virtualtables"))
        skipped = _demo_data(settings, fresh)
        definitions = [d for d in definitions if d.entity_set not in skipped]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-MaxVersion": "4.0"}
        with httpx.Client(base_url=dataverse_base, headers=headers, timeout=30) as client:
            sets = register_definitions(client, service_root, key, definitions, key_header=header)
    except (DefinitionError, RuntimeError, httpx.HTTPError) as error:
        log.warning("virtual tables were not registered in Dataverse: %s", error)
        return [
            f"Virtual tables: not registered ({error})",
            f"  $metadata     curl -H '{header}: {key}' '{service_root}$metadata'",
        ]
    lines = [
        "Virtual tables (Dataverse -> the host's OData endpoint -> SQLite, F&O, Table Storage, live):",
        f"  $metadata     curl -H '{header}: {key}' '{service_root}$metadata'",
    ]
    for external, entity_set in sets.items():
        lines.append(f"  {external:<18} Dataverse entity set {entity_set}")
    if "Products" in sets:
        lines.append(
            f"  try           curl -H 'Authorization: Bearer local' "
            f"'{dataverse_base}{sets['Products']}?$select=dwvt_name,dwvt_price&$top=5&$count=true'"
        )
    lines.append("  CLI           dualwrite vt query Products --top 5   (dualwrite vt metadata: the CSDL)")
    return lines
