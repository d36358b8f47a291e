"""The service document and `$metadata` (CSDL XML, OData v4) of the virtual tables, as Dataverse reads them when a
maker picks an entity set of the data source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

from core.virtual.model import DerivedKey, VirtualTable

NAMESPACE = "DualWrite.Virtual"


def _edm(edm: str) -> str:
    # OData v4 has no Edm.DateTime (a v2/v3 type the Data Provider's list still names): it is served as
    # Edm.DateTimeOffset, which Dataverse maps to a date-and-time column just the same.
    return "Edm.DateTimeOffset" if edm == "Edm.DateTime" else edm


def _property(name: str, edm: str, nullable: bool, max_length: int | None = None, scale: int | None = None) -> str:
    attributes = f"Name={quoteattr(name)} Type={quoteattr(_edm(edm))}"
    if not nullable:
        attributes += ' Nullable="false"'
    if max_length is not None:
        attributes += f' MaxLength="{max_length}"'
    if scale is not None:
        attributes += f' Precision="38" Scale="{scale}"'
    return f"        <Property {attributes}/>"


def metadata_xml(tables: Sequence[VirtualTable]) -> str:
    types: list[str] = []
    sets: list[str] = []
    for table in tables:
        lines = [
            f"      <EntityType Name={quoteattr(table.type_name)}>",
            f"        <Key><PropertyRef Name={quoteattr(table.id_name)}/></Key>",
        ]
        if isinstance(table.key, DerivedKey):
            lines.append(_property(table.key.id_name, "Edm.Guid", False))
        for column in table.columns:
            nullable = column.nullable and column.name != table.id_name
            lines.append(_property(column.name, column.type, nullable, column.max_length, column.scale))
        lines.append("      </EntityType>")
        types.append("\n".join(lines))
        sets.append(
            f"        <EntitySet Name={quoteattr(table.entity_set)} "
            f"EntityType={quoteattr(f'{NAMESPACE}.{table.type_name}')}/>"
        )
    return "\n".join(
        [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
            "  <edmx:DataServices>",
            f'    <Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
            *types,
            '      <EntityContainer Name="Container">',
            *sets,
            "      </EntityContainer>",
            "    </Schema>",
            "  </edmx:DataServices>",
            "</edmx:Edmx>",
            "",
        ]
    )


def service_document(base_url: str, tables: Sequence[VirtualTable]) -> dict[str, Any]:
    return {
        "@odata.context": f"{base_url}$metadata",
        "value": [{"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in tables],
    }
