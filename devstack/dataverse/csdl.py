"""`$metadata`: the CSDL document of the schema, in the shape Dataverse publishes (namespace
Microsoft.Dynamics.CRM, entity types named by logical name, lookups as `_x_value` properties plus
single-valued navigation properties with referential constraints, one entity set per table)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from devstack.dataverse.schema import EDM_TYPES, Schema

EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
NAMESPACE = "Microsoft.Dynamics.CRM"


def csdl(schema: Schema) -> bytes:
    ET.register_namespace("edmx", EDMX)
    root = ET.Element(f"{{{EDMX}}}Edmx", {"Version": "4.0"})
    services = ET.SubElement(root, f"{{{EDMX}}}DataServices")
    ns = ET.SubElement(services, f"{{{EDM}}}Schema", {"Namespace": NAMESPACE, "Alias": "mscrm"})
    for table in schema.tables.values():
        entity = ET.SubElement(ns, f"{{{EDM}}}EntityType", {"Name": table.logical_name})
        key = ET.SubElement(entity, f"{{{EDM}}}Key")
        ET.SubElement(key, f"{{{EDM}}}PropertyRef", {"Name": table.primary_id})
        for column in table.columns.values():
            if not column.valid_for_read:
                continue
            attrs = {"Name": column.value_property, "Type": EDM_TYPES[column.type]}
            if column.type in ("string", "memo") and column.max_length:
                attrs["MaxLength"] = str(column.max_length)
            if column.type in ("decimal", "money"):
                attrs["Scale"] = str(column.precision if column.precision is not None else 10)
            if column.type == "datetime" and column.date_only:
                attrs["Type"] = "Edm.Date"
            ET.SubElement(entity, f"{{{EDM}}}Property", attrs)
        for nav, (column, target) in table.navigation.items():
            prop = ET.SubElement(entity, f"{{{EDM}}}NavigationProperty",
                                 {"Name": nav, "Type": f"{NAMESPACE}.{target}"})
            ET.SubElement(prop, f"{{{EDM}}}ReferentialConstraint", {
                "Property": column.value_property, "ReferencedProperty": schema.table(target).primary_id})
    container = ET.SubElement(ns, f"{{{EDM}}}EntityContainer", {"Name": "System"})
    for table in schema.tables.values():
        entity_set = ET.SubElement(container, f"{{{EDM}}}EntitySet",
                                   {"Name": table.entity_set, "EntityType": f"{NAMESPACE}.{table.logical_name}"})
        for nav, (_, target) in table.navigation.items():
            ET.SubElement(entity_set, f"{{{EDM}}}NavigationPropertyBinding",
                          {"Path": nav, "Target": schema.table(target).entity_set})
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode").encode()
