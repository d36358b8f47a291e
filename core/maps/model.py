"""The table map: one JSON file per map under maps/, validated by this pydantic model.

A map pairs an F&O data entity with a Dataverse table. Structure only is checked here (and
in the JSON Schema generated from these classes); cross-field and cross-map rules live in
`core.maps.validation`, so that one broken map yields every problem at once, by name.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.maps.filters import Node, filter_fields, parse_filter
from core.maps.transforms import Transform
from core.maps.values import ValueType

Direction = Literal["both", "to_dataverse", "to_fno"]
Side = Literal["fno", "dataverse"]
ConflictPolicy = Literal["primary_wins", "latest_wins"]

_NAME = r"^[a-z0-9][a-z0-9-]*$"


@lru_cache(maxsize=256)
def _parsed(text: str) -> Node:
    # Apply evaluates a map's filter on every change: parse each text once (the AST is immutable).
    return parse_filter(text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FnoSide(_Strict):
    entity_set: str = Field(description="Public collection name of the data entity, e.g. CustomersV3")
    key: list[str] = Field(min_length=1, description="All key fields, dataAreaId included when company-specific")
    filter: str | None = Field(None, description="Source filter: OData $filter or F&O range expression")
    event_entity: str | None = Field(
        None, description="Logical name of the entity's virtual table in F&O data events, "
        "e.g. mserp_custcustomerv3entity (mserp_ + the AOT entity name in lower case)")
    business_events: list[str] = Field(
        default_factory=list, description="Business events that signal a change of this entity; their "
        "contract must carry the key fields by their F&O names, LegalEntity and ChangeType")


class DataverseSide(_Strict):
    table: str = Field(description="Logical name, e.g. account")
    entity_set: str = Field(description="Entity set name used in Web API URLs, e.g. accounts")
    primary_id: str = Field(description="Primary id column, e.g. accountid")
    key: list[str] = Field(
        min_length=1,
        description="Integration key (an alternate key): columns, and the company part as "
        "'<company lookup>.<company code column>', e.g. msdyn_company.cdm_companycode",
    )
    filter: str | None = Field(None, description="Source filter in OData $filter syntax (table columns only)")


class Company(_Strict):
    """How a company-specific map carries the company: dataAreaId in F&O, a lookup to the
    company table in Dataverse. The company is part of both keys and is never a field mapping."""

    map: str = Field(description="The map of legal entities (its Dataverse key is the company code)")
    fno: str = Field("dataAreaId", description="Company field of the F&O entity")
    dataverse: str = Field(description="Company lookup (navigation property) of the Dataverse table")


class FieldMapping(_Strict):
    fno: str | None = Field(description="F&O field, or null for a Dataverse-only value (a constant)")
    dataverse: str | None = Field(description="Dataverse column, or null for an F&O-only value (a constant)")
    direction: Direction = Field(description="both, to_dataverse (F&O -> Dataverse) or to_fno")
    type: ValueType = Field(
        description="Type of the F&O field (of the Dataverse column when there is no F&O field); "
        "the other side's type follows from the transforms")
    transform: list[Transform] = Field(
        default_factory=list, description="Transforms, written in the F&O -> Dataverse direction")

    @property
    def label(self) -> str:
        return self.fno or self.dataverse or "?"


class Lookup(_Strict):
    """A reference to a row of another map, carried as a navigation property in Dataverse and
    as the referenced row's key field(s) in F&O."""

    dataverse: str = Field(description="Single-valued navigation property, e.g. msdyn_customergroupid")
    map: str = Field(description="Name of the map of the referenced rows")
    fno: dict[str, str] = Field(
        min_length=1,
        description="F&O field of this entity -> key field of the referenced entity (company excluded). A field "
        "of this entity's key may take part when the lookup is to_dataverse (a lookup through a composite key, "
        "e.g. an address's PartyNumber): the key field mapping writes it to F&O")
    direction: Direction = "both"
    required: bool = Field(
        False, description="A required lookup cannot be written later, so it cannot break a cycle")
    when_target_enabled: bool = Field(
        False, description="The lookup is active only while its target map is enabled; otherwise it is left out "
        "(not read, written nor waited for), so an enabled map may point into a scenario that is turned off, e.g. "
        "customers -> parties. Such a lookup cannot be required")

    @property
    def label(self) -> str:
        return self.dataverse

    def column(self, target_table: str) -> str:
        """The lookup column behind the navigation property, as `_<column>_value` reads it: a polymorphic
        lookup's per-table property (parentcustomerid_account) is its column and the target table's name."""
        suffix = f"_{target_table}"
        if self.dataverse.endswith(suffix) and len(self.dataverse) > len(suffix):
            return self.dataverse[:-len(suffix)]
        return self.dataverse


class Validity(_Strict):
    """Date-effective rows (F&O's valid time state, e.g. party postal addresses): the F&O fields holding the
    validity window and, optionally, the primary flag that holds only while the row is valid. All three are
    field mappings of the map as well; their Dataverse columns follow from those."""

    valid_from: str = Field(description="F&O field where validity starts (date or datetime), e.g. ValidFrom")
    valid_to: str | None = Field(None, description="F&O field where validity ends, exclusive; empty = open")
    primary: str | None = Field(
        None, description="F&O field of the primary flag (NoYes or boolean): Dataverse gets it as 'primary now', "
        "true only while the row is valid, so a future-dated primary row becomes primary on its date; "
        "a Dataverse change to a row that is not valid now does not send the flag back")


class TableMap(_Strict):
    schema_: str | None = Field(None, alias="$schema", description="Path of map.schema.json, for editors")
    name: str = Field(pattern=_NAME, description="Unique map name, e.g. customers")
    title: str | None = None
    description: str | None = None
    version: str = Field(pattern=r"^\d+(\.\d+){0,3}$")
    enabled: bool = True
    primary: Side = Field(description="Side that wins initial sync and, under primary_wins, conflicts")
    conflict: ConflictPolicy = "primary_wins"
    online: bool = Field(False, description=(
        "Dataverse -> F&O changes are written to F&O within the user's Dataverse save (a synchronous webhook "
        "step): when F&O refuses, the save fails with F&O's message. F&O -> Dataverse stays asynchronous."))
    company: Company | None = Field(None, description="Set for company-specific maps")
    fno: FnoSide
    dataverse: DataverseSide
    fields: list[FieldMapping] = Field(min_length=1)
    lookups: list[Lookup] = Field(default_factory=list)
    validity: Validity | None = Field(None, description="Set for date-effective rows (a validity window)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def source_filter(self, side: Side) -> Node | None:
        """The parsed source filter of `side` (evaluate it on records read there), or None."""
        text = self.fno.filter if side == "fno" else self.dataverse.filter
        return _parsed(text) if text else None

    def fields_for(self, direction: Literal["to_dataverse", "to_fno"]) -> list[FieldMapping]:
        return [f for f in self.fields if f.direction in ("both", direction)]

    def lookups_for(self, direction: Literal["to_dataverse", "to_fno"]) -> list[Lookup]:
        return [lk for lk in self.lookups if lk.direction in ("both", direction)]

    def with_active_lookups(self, enabled: Collection[str]) -> TableMap:
        """The map as it runs beside the `enabled` maps: lookups active only with their target enabled are left
        out while it is not."""
        active = [lk for lk in self.lookups if not lk.when_target_enabled or lk.map in enabled]
        return self if len(active) == len(self.lookups) else self.model_copy(update={"lookups": active})

    def sends_to(self, side: Side) -> bool:
        """Whether the map writes anything to `side` (a field or a lookup mapped that way)."""
        direction: Literal["to_dataverse", "to_fno"] = "to_fno" if side == "fno" else "to_dataverse"
        source = "dataverse" if side == "fno" else "fno"
        return any(getattr(f, source) for f in self.fields_for(direction)) or bool(self.lookups_for(direction))

    def dataverse_columns_to_send(self) -> set[str]:
        """The Dataverse columns apply needs from an event to send a row to F&O: mapped fields, lookups and
        the company (as navigation properties), the key, and the source filter's columns. Deployment
        images these; an event lacking any of them is completed by a read."""
        names = {f.dataverse for f in self.fields_for("to_fno") if f.dataverse}
        names |= {lk.dataverse for lk in self.lookups_for("to_fno")}
        names |= {k for k in self.dataverse.key if "." not in k}
        if self.company is not None:
            names.add(self.company.dataverse)
        node = self.source_filter("dataverse")
        return names | ({n for n in filter_fields(node) if "." not in n} if node is not None else set())

    def counterparts(self, side: Side, names: Iterable[str]) -> set[str]:
        """The other side's columns that `side`'s columns `names` map to (fields, lookups, the company)."""
        wanted, out = set(names), set()
        for mapping in self.fields:
            here, there = (mapping.fno, mapping.dataverse) if side == "fno" else (mapping.dataverse, mapping.fno)
            if here in wanted and there:
                out.add(there)
        for lookup in self.lookups:
            fno_fields = set(lookup.fno)
            if side == "dataverse" and lookup.dataverse in wanted:
                out |= fno_fields
            elif side == "fno" and fno_fields & wanted:
                out.add(lookup.dataverse)
        if self.company is not None:
            here, there = ((self.company.fno, self.company.dataverse) if side == "fno"
                           else (self.company.dataverse, self.company.fno))
            if here in wanted:
                out.add(there)
        return out

    def without_company(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """A canonical record key without its company part (the first, for company-specific maps)."""
        return key[1:] if self.company is not None else key

    def key_fields(self, side: Side) -> list[str]:
        """Key parts of `side` without the company part."""
        if side == "fno":
            return [k for k in self.fno.key if not (self.company and k == self.company.fno)]
        return [k for k in self.dataverse.key if not (self.company and k.split(".")[0] == self.company.dataverse)]

    def key_pairs(self) -> list[tuple[str, str]]:
        """(F&O key field, Dataverse key column) pairs, company excluded, in F&O key order."""
        pairs = []
        for fno_key in self.key_fields("fno"):
            mapping = next((f for f in self.fields if f.fno == fno_key and f.dataverse), None)
            if mapping is not None:
                pairs.append((fno_key, mapping.dataverse or ""))
        return pairs
