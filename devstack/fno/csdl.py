"""`$metadata`: the CSDL document generic OData v4 clients read to learn the entity sets."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from devstack.fno.schema import Field, Schema

_EDM = {"string": "Edm.String", "int": "Edm.Int32", "real": "Edm.Decimal", "date": "Edm.DateTimeOffset",
        "utcdatetime": "Edm.DateTimeOffset"}


def _property(schema: Schema, fld: Field) -> str:
    edm = f"{schema.namespace}.{fld.enum}" if fld.type == "enum" else _EDM[fld.type]
    attrs = [f"Name={quoteattr(fld.name)}", f"Type={quoteattr(edm)}", 'Nullable="false"']
    if fld.type == "string" and fld.length:
        attrs.append(f'MaxLength="{fld.length}"')
    if fld.type == "real":
        attrs.append(f'Precision="{fld.precision or 32}" Scale="{fld.scale if fld.scale is not None else 6}"')
    inner = ""
    if fld.label:
        inner += f'<Annotation Term="Org.OData.Core.V1.Description" String={quoteattr(fld.label)}/>'
    if fld.read_only:
        inner += '<Annotation Term="Org.OData.Core.V1.Computed" Bool="true"/>'
    return f"<Property {' '.join(attrs)}>{inner}</Property>" if inner else f"<Property {' '.join(attrs)}/>"


def metadata_xml(schema: Schema) -> str:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        f'<Schema Namespace="{schema.namespace}" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
    ]
    for ent in schema.entities.values():
        out.append(f'<EntityType Name="{ent.name}">')
        out.append("<Key>" + "".join(f'<PropertyRef Name="{k}"/>' for k in ent.keys) + "</Key>")
        out.extend(_property(schema, f) for f in ent.fields.values())
        out.append("</EntityType>")
    for name, symbols in schema.enums.items():
        out.append(f'<EnumType Name="{name}">')
        out.extend(f'<Member Name="{s}" Value="{v}"/>' for s, v in symbols.items())
        out.append("</EnumType>")
    out.append('<EntityContainer Name="Resources">')
    for ent in schema.entities.values():
        out.append(f'<EntitySet Name="{ent.collection}" EntityType="{schema.namespace}.{ent.name}"/>')
    out.append("</EntityContainer>")
    out.extend(["</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"])
    return "\n".join(out)
