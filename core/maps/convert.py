"""One value through a field mapping: canonical type on entry, transforms, canonical type on exit."""

from __future__ import annotations

from typing import Any, Literal

from core.maps.model import FieldMapping
from core.maps.values import ValueType, coerce

ProjectDirection = Literal["to_dataverse", "to_fno"]


def field_types(mapping: FieldMapping) -> list[ValueType]:
    """The value type before and after each transform, F&O side first, Dataverse side last."""
    types: list[ValueType] = [mapping.type]
    for transform in mapping.transform:
        types.append(transform.out_type(types[-1]))
    return types


def convert(mapping: FieldMapping, direction: ProjectDirection, value: Any) -> Any:
    """One value through a field mapping's transforms, in canonical form on both ends."""
    types = field_types(mapping)
    has_source = (mapping.fno if direction == "to_dataverse" else mapping.dataverse) is not None
    if direction == "to_dataverse":
        current = coerce(types[0], value) if has_source else None
        for index, transform in enumerate(mapping.transform):
            current = coerce(types[index + 1], transform.to_dataverse(current))
        return current
    current = coerce(types[-1], value) if has_source else None
    for index in range(len(mapping.transform) - 1, -1, -1):
        current = coerce(types[index], mapping.transform[index].to_fno(current))
    return current
