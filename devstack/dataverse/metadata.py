"""`EntityDefinitions` metadata: tables, their Attributes (type, MaxLength, Precision, RequiredLevel,
Targets, option sets through the Picklist cast), alternate Keys and ManyToOneRelationships; enough for a
mapping editor and a map validator. `$select` and simple `$filter` (`Prop eq 'x'` joined by `and`)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from devstack.dataverse.errors import DataverseError, bad_request
from devstack.dataverse.query import parse_expand
from devstack.dataverse.resources import parse_key, split_path
from devstack.dataverse.schema import ATTRIBUTE_TYPES, METADATA_TYPES, Column, Schema, Table

NS = uuid.UUID("0b7f3a52-8d7e-4c55-a0a1-5f4e2d9c6b10")
CRM = "Microsoft.Dynamics.CRM."


def _label(text: str) -> dict[str, Any]:
    label = {"Label": text, "LanguageCode": 1033}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def metadata_id(*parts: str) -> str:
    return str(uuid.uuid5(NS, "/".join(parts)))


def entity_metadata(table: Table) -> dict[str, Any]:
    return {
        "@odata.type": f"#{CRM}EntityMetadata",
        "MetadataId": metadata_id(table.logical_name),
        "LogicalName": table.logical_name, "SchemaName": table.logical_name, "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set, "CollectionSchemaName": table.entity_set,
        "DisplayName": _label(table.display_name), "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name, "ChangeTrackingEnabled": table.change_tracking,
        "IsCustomEntity": table.logical_name.startswith(("msdyn_", "cdm_")), "IsActivity": False,
        "IsIntersect": False, "OwnershipType": "OrganizationOwned" if table.system else "UserOwned",
        "IsOptimisticConcurrencyEnabled": table.virtual is None,
        "TableType": "Standard" if table.virtual is None else "Virtual",
        "DataProviderId": None if table.virtual is None else table.virtual.data_provider_id,
        "DataSourceId": None if table.virtual is None else table.virtual.data_source_id,
        "ExternalName": None if table.virtual is None else table.virtual.external_name,
        "ExternalCollectionName": None if table.virtual is None else table.virtual.external_collection_name,
    }


def attribute_metadata(table: Table, column: Column, *, expand_options: bool = False) -> dict[str, Any]:
    kind = ATTRIBUTE_TYPES[column.type]
    if column.is_lookup and set(column.targets) == {"account", "contact"}:
        kind = "Customer"
    out: dict[str, Any] = {
        "@odata.type": f"#{CRM}{METADATA_TYPES[column.type]}",
        "MetadataId": metadata_id(table.logical_name, column.name),
        "LogicalName": column.name, "SchemaName": column.name, "EntityLogicalName": table.logical_name,
        "AttributeType": kind, "AttributeTypeName": {"Value": f"{kind}Type"},
        "DisplayName": _label(column.name),
        "RequiredLevel": {"Value": column.required, "CanBeChanged": column.required != "SystemRequired",
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "IsPrimaryId": column.name == table.primary_id, "IsPrimaryName": column.name == table.primary_name,
        "IsValidForCreate": not column.read_only, "IsValidForUpdate": not column.read_only,
        "IsValidForRead": column.valid_for_read, "IsCustomAttribute": column.name.startswith(("msdyn_", "cdm_")),
        "ExternalName": column.external_name,
    }
    if column.type in ("string", "memo"):
        out["MaxLength"] = column.max_length
        out["Format"] = "TextArea" if column.type == "memo" else "Text"
    if column.type in ("decimal", "money", "double"):
        out["Precision"] = column.precision
        out["PrecisionSource"] = 0 if column.type == "money" else None
    if column.type in ("decimal", "money", "double", "integer", "bigint"):
        out["MinValue"] = None if column.min_value is None else float(column.min_value)
        out["MaxValue"] = None if column.max_value is None else float(column.max_value)
    if column.type == "datetime":
        out["Format"] = "DateOnly" if column.date_only else "DateAndTime"
        out["DateTimeBehavior"] = {"Value": "DateOnly" if column.date_only else "UserLocal"}
    if column.is_lookup:
        out["Targets"] = list(column.targets)
    if column.options and expand_options:
        out["OptionSet"] = {
            "MetadataId": metadata_id(table.logical_name, column.name, "optionset"),
            "Name": f"{table.logical_name}_{column.name}", "IsGlobal": False,
            "Options": [{"Value": value, "Label": _label(text)} for value, text in column.options.items()],
        }
    return out


def key_metadata(table: Table) -> list[dict[str, Any]]:
    return [
        {"MetadataId": metadata_id(table.logical_name, "key", key.name), "LogicalName": key.name,
         "SchemaName": key.name, "EntityLogicalName": table.logical_name, "KeyAttributes": list(key.columns),
         "EntityKeyIndexStatus": "Active", "DisplayName": _label(key.name)}
        for key in table.keys
    ]


def many_to_one(table: Table) -> list[dict[str, Any]]:
    out = []
    for column in table.columns.values():
        if column.is_lookup:
            for target in column.targets:
                out.append({
                    "MetadataId": metadata_id(table.logical_name, column.name, target),
                    "SchemaName": f"{table.logical_name}_{column.name}_{target}",
                    "ReferencingEntity": table.logical_name, "ReferencingAttribute": column.name,
                    "ReferencedEntity": target, "ReferencedAttribute": f"{target}id",
                    "ReferencingEntityNavigationPropertyName": column.nav_for(target),
                })
    return out


def _filter(items: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text:
        return items
    clauses = []
    for clause in re.split(r"\s+and\s+", text.strip()):
        match = re.fullmatch(r"\(?\s*(\w+)\s+eq\s+(?:'((?:[^']|'')*)'|(true|false|\d+))\s*\)?", clause)
        if not match:
            raise bad_request(f"The simulator's metadata $filter supports only 'Property eq value' clauses: '{text}'.")
        value: Any = match.group(2).replace("''", "'") if match.group(2) is not None else match.group(3)
        value = {"true": True, "false": False}.get(value, value) if match.group(2) is None else value
        clauses.append((match.group(1), value))
    return [i for i in items if all(str(i.get(k)) == str(v) if not isinstance(v, bool) else i.get(k) is v
                                    for k, v in clauses)]


def _select(item: dict[str, Any], text: str | None, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    if not text:
        return item
    wanted = {s.strip() for s in text.split(",")} | {"MetadataId", "@odata.type", *keep}
    return {k: v for k, v in item.items() if k in wanted}


def handle_metadata(schema: Schema, path: str, params: dict[str, str], base: str) -> dict[str, Any]:
    """GET under EntityDefinitions. `path` is the part after the API root."""
    parsed = split_path(path)
    tables = list(schema.tables.values())
    if parsed.key is None:
        items = [entity_metadata(t) for t in tables]
        items = _filter(items, params.get("$filter"))
        return {"@odata.context": f"{base}$metadata#EntityDefinitions",
                "value": [_select(i, params.get("$select")) for i in items]}
    key = parsed.key
    table = next(
        (t for t in tables if (key.get("LogicalName") == t.logical_name)
         or (None in key and str(key[None]) == metadata_id(t.logical_name))),
        None,
    )
    if table is None:
        raise DataverseError(404, "0x80040217", f"Could not find entity with key {key}.")
    rest = parsed.rest
    if not rest:
        item = _select(entity_metadata(table), params.get("$select"))
        for name, sel in parse_expand(params.get("$expand")).items():
            if name == "Attributes":
                item["Attributes"] = [_select(attribute_metadata(table, c), sel) for c in table.columns.values()]
            elif name == "Keys":
                item["Keys"] = [_select(k, sel) for k in key_metadata(table)]
            elif name == "ManyToOneRelationships":
                item["ManyToOneRelationships"] = [_select(r, sel) for r in many_to_one(table)]
            else:
                raise bad_request(f"Could not find a property named '{name}' on type '{CRM}EntityMetadata'.")
        return {"@odata.context": f"{base}$metadata#EntityDefinitions/$entity", **item}
    head = rest[0]
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", head)
    if not match:
        raise bad_request(f"Resource not found for the segment '{head}'.")
    segment, inner_key = match.group(1), match.group(2)
    if segment == "Attributes":
        cast = rest[1] if len(rest) > 1 else None
        expand = "OptionSet" in (params.get("$expand") or "")
        attrs = [attribute_metadata(table, c, expand_options=expand and cast is not None)
                 for c in table.columns.values()]
        if cast:
            attrs = [a for a in attrs if a["@odata.type"] == f"#{cast}"]
        if inner_key:
            wanted = parse_key(inner_key)
            name = wanted.get("LogicalName") or wanted.get(None)
            found = next((a for a in attrs if name in (a["LogicalName"], a["MetadataId"])), None)
            if found is None:
                raise DataverseError(404, "0x80040217", f"Could not find attribute {name} on {table.logical_name}.")
            return {"@odata.context": f"{base}$metadata#EntityDefinitions('{table.logical_name}')/Attributes/$entity",
                    **_select(found, params.get("$select"))}
        attrs = _filter(attrs, params.get("$filter"))
        return {"@odata.context": f"{base}$metadata#EntityDefinitions('{table.logical_name}')/Attributes",
                "value": [_select(a, params.get("$select"), keep=("OptionSet",)) for a in attrs]}
    if segment == "Keys":
        return {"@odata.context": f"{base}$metadata#EntityDefinitions('{table.logical_name}')/Keys",
                "value": [_select(k, params.get("$select")) for k in key_metadata(table)]}
    if segment == "ManyToOneRelationships":
        return {"@odata.context": f"{base}$metadata#EntityDefinitions('{table.logical_name}')/ManyToOneRelationships",
                "value": [_select(r, params.get("$select")) for r in many_to_one(table)]}
    raise bad_request(f"Resource not found for the segment '{segment}'.")
