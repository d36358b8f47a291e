"""Projection: a source record through a map to the values to write on the other side.

Input records hold values by source field name in (or coercible to) their canonical form, see
`core.maps.values`. A field absent from the record is left alone (a partial change); a field
present with null clears the target. Lookups arrive and leave as key references:
- to Dataverse, the F&O fields of a lookup become a `KeyRef` to the referenced map's
  Dataverse integration key under the navigation property (None clears the lookup);
- to F&O, the navigation property holds a `KeyRef` (or a {key part: value} mapping) on the
  referenced map's Dataverse key; it becomes that row's F&O key values in this entity's fields.
The company is written as a `KeyRef` to the legal-entity map (Dataverse) or as dataAreaId in
lower case (F&O).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.maps.convert import ProjectDirection, convert
from core.maps.keys import KeyRef, company_code
from core.maps.model import FieldMapping, Lookup, Side, TableMap
from core.maps.transforms import TransformTypeError
from core.maps.validity import is_current
from core.maps.validity import knows_window as validity_knows_window
from core.maps.validity import now as validity_now
from core.maps.values import MapValueError


class ProjectionError(MapValueError):
    """A record that cannot be projected through a map; names the map and field."""

    def __init__(self, map_name: str, field: str, message: str) -> None:
        super().__init__(f"map {map_name!r}, field {field!r}: {message}")
        self.map_name = map_name
        self.field = field


def project(
    table_map: TableMap,
    direction: ProjectDirection,
    record: Mapping[str, Any],
    *,
    maps: Mapping[str, TableMap] | None = None,
) -> dict[str, Any]:
    """The target-side values of `record` (read on the other side) through `table_map`.
    `maps` (all maps by name) is needed when the map has lookups."""
    source: Side = "fno" if direction == "to_dataverse" else "dataverse"
    out: dict[str, Any] = {}
    company = table_map.company
    if company is not None:
        try:
            code = company_code(table_map, source, record)
        except MapValueError as error:
            raise ProjectionError(table_map.name, company.fno if source == "fno" else company.dataverse,
                                  str(error)) from None
        if code is not None:
            if direction == "to_dataverse":
                column = _company_column(table_map)
                out[company.dataverse] = KeyRef(company.map, "dataverse", ((column, code),))
            else:
                out[company.fno] = code.lower()
    for mapping in table_map.fields_for(direction):
        source_name = mapping.fno if direction == "to_dataverse" else mapping.dataverse
        target_name = mapping.dataverse if direction == "to_dataverse" else mapping.fno
        if target_name is None or (source_name is not None and source_name not in record):
            continue
        value = record[source_name] if source_name is not None else None
        try:
            out[target_name] = convert(mapping, direction, value)
        except (MapValueError, TransformTypeError) as error:
            raise ProjectionError(table_map.name, source_name or target_name, str(error)) from None
    for lookup in table_map.lookups_for(direction):
        target = _target_map(table_map, lookup, maps)
        if direction == "to_dataverse":
            _lookup_to_dataverse(table_map, lookup, target, record, out)
        else:
            _lookup_to_fno(table_map, lookup, target, record, out)
    if table_map.validity is not None and table_map.validity.primary is not None:
        _primary_now(table_map, direction, record, out)
    return out


def _primary_now(table_map: TableMap, direction: ProjectDirection, record: Mapping[str, Any],
                 out: dict[str, Any]) -> None:
    """A date-effective row's primary flag means "primary now" in Dataverse: false while the row is not valid.
    Dataverse's false on such a row is not sent back (the row may become primary on its date)."""
    validity = table_map.validity
    assert validity is not None and validity.primary is not None
    by_fno = {f.fno: f for f in table_map.fields if f.fno}
    for name in (validity.primary, validity.valid_from, validity.valid_to):
        if name is not None and name not in by_fno:  # a definition not validated as a set (a preview's)
            raise ProjectionError(table_map.name, name or "validity", "validity names no F&O field this map maps")
    flag = by_fno[validity.primary]
    if (flag.dataverse if direction == "to_dataverse" else flag.fno) not in out:
        return
    names = [n for n in (validity.valid_from, validity.valid_to) if n]
    try:
        if direction == "to_dataverse":
            if not validity_knows_window(validity, record):
                return
            fno_record = {n: record[n] for n in names}
        else:
            columns = {n: by_fno[n].dataverse for n in names}
            if any(c is None or c not in record for c in columns.values()):
                return
            fno_record = {n: convert(by_fno[n], "to_fno", record[c]) for n, c in columns.items() if c}
        current = is_current(validity, fno_record, validity_now())
    except (MapValueError, TransformTypeError) as error:
        raise ProjectionError(table_map.name, validity.valid_from, str(error)) from None
    if current:
        return
    if direction == "to_dataverse":
        out[flag.dataverse or ""] = False
    else:
        del out[flag.fno or ""]


def _company_column(table_map: TableMap) -> str:
    """The company code column of the legal-entity map, from 'msdyn_company.cdm_companycode'."""
    assert table_map.company is not None
    dotted = next(k for k in table_map.dataverse.key if k.split(".")[0] == table_map.company.dataverse)
    return dotted.split(".", 1)[-1]


def _target_map(table_map: TableMap, lookup: Lookup, maps: Mapping[str, TableMap] | None) -> TableMap:
    if maps is None or lookup.map not in maps:
        raise ProjectionError(table_map.name, lookup.dataverse,
                              f"the lookup needs map {lookup.map!r}; pass all maps to project()")
    return maps[lookup.map]


def _key_mapping(target: TableMap, fno_key: str) -> FieldMapping:
    return next(f for f in target.fields if f.fno == fno_key and f.dataverse is not None)


def _lookup_to_dataverse(
    table_map: TableMap, lookup: Lookup, target: TableMap, record: Mapping[str, Any], out: dict[str, Any]
) -> None:
    present = [name for name in lookup.fno if name in record]
    if not present:
        return
    if len(present) < len(lookup.fno):
        missing = sorted(set(lookup.fno) - set(present))
        raise ProjectionError(table_map.name, lookup.dataverse, f"lookup fields {missing} are missing")
    if all(record[name] in (None, "") for name in lookup.fno):
        out[lookup.dataverse] = None
        return
    by_target_key = {target_key: record[ours] for ours, target_key in lookup.fno.items()}
    values: list[tuple[str, Any]] = []
    try:
        for part in target.dataverse.key:
            if target.company is not None and part.split(".")[0] == target.company.dataverse:
                code = company_code(table_map, "fno", record)
                if code is None:
                    raise MapValueError("the record has no company for the company-specific lookup")
                values.append((part, code))
                continue
            fno_key = next(f for f, d in target.key_pairs() if d == part)
            values.append((part, convert(_key_mapping(target, fno_key), "to_dataverse", by_target_key[fno_key])))
    except (MapValueError, TransformTypeError) as error:
        raise ProjectionError(table_map.name, lookup.dataverse, str(error)) from None
    out[lookup.dataverse] = KeyRef(target.name, "dataverse", tuple(values))


def _lookup_to_fno(
    table_map: TableMap, lookup: Lookup, target: TableMap, record: Mapping[str, Any], out: dict[str, Any]
) -> None:
    if lookup.dataverse not in record:
        return
    reference = record[lookup.dataverse]
    ours_by_target = {target_key: ours for ours, target_key in lookup.fno.items()}
    if reference is None:
        for ours in lookup.fno:
            out[ours] = None
        return
    if isinstance(reference, KeyRef):
        if reference.map != target.name:
            raise ProjectionError(table_map.name, lookup.dataverse,
                                  f"references map {reference.map!r}, expected {target.name!r}")
        values = dict(reference.values)
    elif isinstance(reference, Mapping):
        values = dict(reference)
    else:
        raise ProjectionError(table_map.name, lookup.dataverse,
                              f"{reference!r} is not a key reference (resolve ids to keys before projecting)")
    try:
        if target.company is not None:
            our_company = company_code(table_map, "dataverse", record)
            theirs = company_code(target, "dataverse", values)
            if our_company and theirs and our_company != theirs:
                raise MapValueError(f"references a row of company {theirs}, the record is in {our_company}")
        for fno_key, dv_key in target.key_pairs():
            if dv_key not in values:
                raise MapValueError(f"the key reference lacks {dv_key!r}")
            out[ours_by_target[fno_key]] = convert(_key_mapping(target, fno_key), "to_fno", values[dv_key])
    except (MapValueError, TransformTypeError) as error:
        raise ProjectionError(table_map.name, lookup.dataverse, str(error)) from None
