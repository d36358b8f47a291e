"""A neutral description of the columns of an F&O entity or a Dataverse table.

`core.connectors.metadata` builds these from Dataverse `EntityDefinitions` and F&O `$metadata`;
the validator checks maps against them without knowing either wire format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from core.maps.model import Side
from core.maps.values import ValueType

ColumnType = ValueType | Literal["lookup", "other"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    source_type: str = ""  # the system's own type name (e.g. Money, Edm.Decimal), for messages
    max_length: int | None = None
    scale: int | None = None
    required: bool = False  # a client must supply it on create
    read_only: bool = False
    enum_type: str | None = None
    targets: tuple[str, ...] = ()  # lookup target tables


@dataclass(frozen=True)
class EntitySchema:
    side: Side
    name: str  # F&O public collection name, or Dataverse logical name
    columns: Mapping[str, Column]
    entity_set: str | None = None
    keys: tuple[tuple[str, ...], ...] = ()  # F&O: its one key; Dataverse: alternate keys (attributes)
    # Dataverse: navigation property -> (lookup attribute, target table)
    navigation: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # F&O enum type -> symbols
