"""Live schema readers: Dataverse `EntityDefinitions` and F&O `$metadata`, turned into the
neutral `EntitySchema` that `core.maps.validation.check_metadata` checks maps against.

Parsing is separate from fetching (`parse_*` are pure) so the formats are testable without a
server. Network trouble, throttling and server errors raise `MetadataUnavailable` (worth a
retry); refusals such as 401/403/400 raise `MetadataError` (fix the request or credentials).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from core.maps.catalog import Column, ColumnType, EntitySchema

_ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
_COMPUTED = "Org.OData.Core.V1.Computed"


class MetadataError(RuntimeError):
    """The server refused the metadata request (terminal until the request or access is fixed)."""


class MetadataUnavailable(MetadataError):
    """The metadata could not be read right now (network, throttling, server error): transient."""


# --------------------------------------------------------------------------------------- Dataverse

_DATAVERSE_TYPES: dict[str, ColumnType] = {
    "String": "string", "Memo": "string", "Integer": "integer", "BigInt": "integer",
    "Decimal": "decimal", "Money": "decimal", "Boolean": "boolean", "Picklist": "choice",
    "State": "choice", "Status": "choice", "Lookup": "lookup", "Customer": "lookup", "Owner": "lookup",
    "Uniqueidentifier": "guid",
}
# Set by the platform even when their requirement level says "required".
_PLATFORM_SET = {"Owner", "State", "Status", "Virtual", "EntityName", "ManagedProperty", "CalendarRules"}


def dataverse_api_url(url: str) -> str:
    """The Web API root for an environment URL given with or without /api/data/v9.2/."""
    url = url.rstrip("/")
    return (url if "/api/data/" in url else url + "/api/data/v9.2") + "/"


def parse_dataverse_definition(payload: Mapping[str, Any]) -> EntitySchema:
    """An `EntityDefinitions(LogicalName='x')?$expand=Attributes[,Keys,ManyToOneRelationships]` body."""
    table = str(payload.get("LogicalName") or "")
    if not table or not isinstance(payload.get("Attributes"), list):
        raise MetadataError("an EntityDefinitions answer needs LogicalName and expanded Attributes")
    columns: dict[str, Column] = {}
    lookups: dict[str, tuple[str, ...]] = {}
    for attribute in payload["Attributes"]:
        column = _dataverse_column(attribute)
        if column is not None:
            columns[column.name] = column
            if column.type == "lookup":
                lookups[column.name] = column.targets
    navigation: dict[str, tuple[str, str]] = {}
    relationships = payload.get("ManyToOneRelationships")
    if isinstance(relationships, list):
        for rel in relationships:
            nav, attribute, target = (rel.get("ReferencingEntityNavigationPropertyName"),
                                      rel.get("ReferencingAttribute"), rel.get("ReferencedEntity"))
            if nav and attribute and target:
                navigation[str(nav)] = (str(attribute), str(target))
    else:
        # Without relationships, use Dataverse's naming convention: the lookup's own name, or
        # <lookup>_<target> for polymorphic (customer) lookups.
        for attribute, targets in lookups.items():
            for target in targets:
                navigation[attribute if len(targets) == 1 else f"{attribute}_{target}"] = (attribute, target)
    keys = tuple(tuple(str(a) for a in key.get("KeyAttributes", [])) for key in payload.get("Keys") or [])
    return EntitySchema(side="dataverse", name=table, columns=columns, entity_set=payload.get("EntitySetName"),
                        keys=keys, navigation=navigation)


def _dataverse_column(attribute: Mapping[str, Any]) -> Column | None:
    name = attribute.get("LogicalName")
    if not isinstance(name, str):
        return None
    kind = str(attribute.get("AttributeType") or "")
    column_type: ColumnType = _DATAVERSE_TYPES.get(kind, "other")
    if kind == "DateTime":
        behavior = (attribute.get("DateTimeBehavior") or {}).get("Value")
        column_type = "date" if attribute.get("Format") == "DateOnly" or behavior == "DateOnly" else "datetime"
        kind = f"DateTime ({'DateOnly' if column_type == 'date' else 'DateAndTime'})"
    if attribute.get("IsPrimaryId"):
        column_type = "guid"
    level = (attribute.get("RequiredLevel") or {}).get("Value")
    creatable = bool(attribute.get("IsValidForCreate", True))
    required = (level in ("SystemRequired", "ApplicationRequired") and creatable
                and not attribute.get("IsPrimaryId") and kind not in _PLATFORM_SET)
    max_length = attribute.get("MaxLength") if column_type == "string" else None
    scale = attribute.get("Precision") if column_type == "decimal" else None
    return Column(
        name=name, type=column_type, source_type=kind or "unknown",
        max_length=max_length if isinstance(max_length, int) else None,
        scale=scale if isinstance(scale, int) else None,
        required=required,
        read_only=not creatable and not attribute.get("IsValidForUpdate", True),
        targets=tuple(str(t) for t in attribute.get("Targets") or ()),
    )


async def fetch_dataverse_schemas(
    client: httpx.AsyncClient, url: str, tables: Iterable[str], token: str | None = None
) -> dict[str, EntitySchema]:
    """Schemas of `tables` by logical name; a table the environment lacks is left out."""
    api = dataverse_api_url(url)
    headers = dict(_ODATA_HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"

    async def one(table: str) -> EntitySchema | None:
        base = f"{api}EntityDefinitions(LogicalName='{table}')"
        response = await _get(client, f"{base}?$expand=Attributes,Keys,ManyToOneRelationships", headers)
        if response.status_code == 400:  # an older or stricter server: Attributes alone are enough
            response = await _get(client, f"{base}?$expand=Attributes", headers)
        if response.status_code == 404:
            return None
        _raise_for(response)
        return parse_dataverse_definition(response.json())

    results = await asyncio.gather(*(one(t) for t in sorted(set(tables))))
    return {schema.name: schema for schema in results if schema is not None}


# ----------------------------------------------------------------------------------------- F&O

_EDM_TYPES: dict[str, ColumnType] = {
    "Edm.String": "string", "Edm.Int16": "integer", "Edm.Int32": "integer", "Edm.Int64": "integer",
    "Edm.Byte": "integer", "Edm.Decimal": "decimal", "Edm.Boolean": "boolean", "Edm.Date": "date",
    "Edm.DateTimeOffset": "datetime", "Edm.Guid": "guid",
}


def fno_data_url(url: str) -> str:
    """The OData service root for an environment URL given with or without /data."""
    url = url.rstrip("/")
    return (url if url.endswith("/data") else url + "/data") + "/"


def parse_fno_csdl(text: str) -> dict[str, EntitySchema]:
    """Entity sets of an F&O `$metadata` CSDL document, by public collection name.

    CSDL carries no "mandatory" flag (F&O marks nearly every property Nullable="false"), so
    only key fields count as required on the F&O side."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise MetadataError("refusing a $metadata document with a DTD (entity expansion)")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise MetadataError(f"$metadata is not valid XML: {error}") from None
    enums: dict[str, tuple[str, ...]] = {}
    types: dict[str, ElementTree.Element] = {}
    sets: list[tuple[str, str]] = []
    for schema in root.iter(f"{_EDM}Schema"):
        namespace = schema.get("Namespace", "")
        for enum in schema.findall(f"{_EDM}EnumType"):
            members = sorted(enum.findall(f"{_EDM}Member"), key=lambda m: int(m.get("Value") or 0))
            enums[f"{namespace}.{enum.get('Name')}"] = tuple(m.get("Name") or "" for m in members)
        for entity_type in schema.findall(f"{_EDM}EntityType"):
            types[f"{namespace}.{entity_type.get('Name')}"] = entity_type
        for container in schema.findall(f"{_EDM}EntityContainer"):
            sets.extend((s.get("Name") or "", s.get("EntityType") or "") for s in container.findall(f"{_EDM}EntitySet"))
    short_enums = {name.rsplit(".", 1)[-1]: members for name, members in enums.items()}
    result: dict[str, EntitySchema] = {}
    for set_name, type_name in sets:
        entity = types.get(type_name)
        if entity is None:
            continue
        key = tuple(ref.get("Name") or "" for ref in entity.findall(f"{_EDM}Key/{_EDM}PropertyRef"))
        columns = {}
        for prop in entity.findall(f"{_EDM}Property"):
            column = _fno_column(prop, enums, key)
            columns[column.name] = column
        result[set_name] = EntitySchema(side="fno", name=set_name, columns=columns, entity_set=set_name,
                                        keys=(key,), enums=short_enums)
    return result


def _fno_column(prop: ElementTree.Element, enums: Mapping[str, tuple[str, ...]], key: tuple[str, ...]) -> Column:
    name = prop.get("Name") or ""
    edm = prop.get("Type") or ""
    column_type: ColumnType = "enum" if edm in enums else _EDM_TYPES.get(edm, "other")
    computed = any(a.get("Term") == _COMPUTED and a.get("Bool", "true") == "true"
                   for a in prop.findall(f"{_EDM}Annotation"))
    return Column(
        name=name, type=column_type, source_type=edm,
        max_length=_int(prop.get("MaxLength")) if column_type == "string" else None,
        scale=_int(prop.get("Scale")) if column_type == "decimal" else None,
        required=name in key, read_only=computed,
        enum_type=edm.rsplit(".", 1)[-1] if column_type == "enum" else None,
    )


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


async def fetch_fno_schemas(client: httpx.AsyncClient, url: str, token: str | None = None) -> dict[str, EntitySchema]:
    headers = {"Accept": "application/xml"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await _get(client, f"{fno_data_url(url)}$metadata", headers)
    _raise_for(response)
    return parse_fno_csdl(response.text)


# --------------------------------------------------------------------------------------- shared


async def _get(client: httpx.AsyncClient, url: str, headers: Mapping[str, str]) -> httpx.Response:
    try:
        return await client.get(url, headers=dict(headers))
    except httpx.TransportError as error:
        raise MetadataUnavailable(f"cannot reach {url}: {error}") from None


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    detail = f"GET {response.request.url} answered {response.status_code}: {response.text[:300]}"
    if response.status_code == 429 or response.status_code >= 500:
        raise MetadataUnavailable(detail)
    raise MetadataError(detail)
