"""Rules a set of maps must satisfy before deployment, beyond the file format.

`validate_maps` checks each map and the set (names, keys, directions, transforms, lookups,
filters, cycles). `check_metadata` checks mapped fields against the live schema of both
systems (existence, type compatibility, max length, required columns, keys, lookups).
Both return problems instead of raising, so one run reports everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from core.maps.catalog import Column, EntitySchema
from core.maps.convert import field_types
from core.maps.filters import (
    And,
    AnyOf,
    Between,
    Comparison,
    EnumSymbol,
    FilterError,
    Node,
    Not,
    Or,
    StringCall,
    filter_fields,
    parse_filter,
)
from core.maps.graph import plan_sync
from core.maps.loader import LoadedMap
from core.maps.model import FieldMapping, TableMap
from core.maps.problems import Problem
from core.maps.transforms import Constant, Default, FitLength, TransformTypeError
from core.maps.values import ValueType


@dataclass
class _Report:
    file: str
    map: str
    problems: list[Problem]

    def error(self, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, self.map, field, message))

    def warning(self, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, self.map, field, message, "warning"))


def validate_maps(loaded: Sequence[LoadedMap]) -> list[Problem]:
    problems: list[Problem] = []
    by_name: dict[str, LoadedMap] = {}
    for item in loaded:
        if item.map.name in by_name:
            problems.append(Problem(item.file, item.map.name, None,
                                    f"map name is also used by {by_name[item.map.name].file}"))
        else:
            by_name[item.map.name] = item
    maps = {name: item.map for name, item in by_name.items()}
    for item in by_name.values():
        report = _Report(item.file, item.map.name, problems)
        _check_company(item.map, maps, report)
        _check_fields(item.map, report)
        _check_keys(item.map, report)
        _check_lookups(item.map, maps, report)
        _check_filters(item.map, report)
        _check_online(item.map, report)
        _check_validity(item.map, report)
    _check_shared_tables(by_name, problems)
    resolvable = [m for m in maps.values() if _references_resolve(m, maps)]
    plan = plan_sync(resolvable)
    for cycle in plan.unbreakable:
        members = set(cycle)
        for name in cycle:
            required = [lk.dataverse for lk in maps[name].lookups if lk.map in members and lk.required]
            report = _Report(by_name[name].file, name, problems)
            report.error(", ".join(required) or None,
                         f"cycle {' -> '.join([*cycle, cycle[0]])} has no optional lookup to break it: "
                         "mark one of its lookups \"required\": false so it can be written first and "
                         "patched after")
    return problems


def _check_shared_tables(by_name: Mapping[str, LoadedMap], problems: list[Problem]) -> None:
    """Enabled maps that sync one Dataverse table with different F&O entities and take its changes (send to F&O)
    each need a Dataverse filter, and not the same one: ingest hands a row's change to every such map
    (core.sync.ingest.target_maps), and only the filter keeps a row of one (a product master) from being written to
    F&O as a row of the other's entity (a variant). Overlapping filters are allowed: a row may belong to several
    maps on purpose (a contact that is both customer and vendor person). Maps pairing the same entity and table (a
    stored copy) write the same row. Disabled maps take no changes; enabling one (a scenario) validates the set."""
    sharing: dict[str, list[LoadedMap]] = {}
    for item in by_name.values():
        if item.map.enabled and item.map.sends_to("fno"):
            sharing.setdefault(item.map.dataverse.table, []).append(item)
    for table, items in sharing.items():
        filters: dict[str, Node | None] = {}
        for item in items:
            try:
                filters[item.map.name] = item.map.source_filter("dataverse")
            except FilterError:
                filters[item.map.name] = None  # reported by _check_filters
        for item in items:
            rivals = [o.map.name for o in items if o.map.fno.entity_set != item.map.fno.entity_set]
            if not rivals:
                continue
            report = _Report(item.file, item.map.name, problems)
            node = filters[item.map.name]
            if node is None and item.map.dataverse.filter is None:
                report.error("dataverse.filter", f"maps {', '.join(map(repr, rivals))} sync Dataverse table "
                                                 f"{table!r} with other F&O entities, and changes of its rows reach "
                                                 "every one of them: give each a dataverse.filter that tells its "
                                                 "rows apart")
            elif node is not None:
                same = [r for r in rivals if filters[r] == node]
                if same:
                    report.error("dataverse.filter", f"the same filter as map {same[0]!r} on Dataverse table "
                                                     f"{table!r}: the maps cannot be told apart")


def _references_resolve(table_map: TableMap, maps: Mapping[str, TableMap]) -> bool:
    return (table_map.company is None or table_map.company.map in maps) and all(
        lk.map in maps for lk in table_map.lookups)


def _check_company(table_map: TableMap, maps: Mapping[str, TableMap], report: _Report) -> None:
    company = table_map.company
    if company is None:
        if any(k.lower() == "dataareaid" for k in table_map.fno.key):
            report.error("dataAreaId", "the F&O key has dataAreaId but the map has no 'company'; "
                                       "company-specific entities must pair with company-specific tables")
        return
    if company.fno not in table_map.fno.key:
        report.error(company.fno, f"company field {company.fno!r} must be part of the F&O key")
    dotted = [k for k in table_map.dataverse.key if k.split(".")[0] == company.dataverse]
    if len(dotted) != 1 or "." not in dotted[0]:
        report.error(company.dataverse, f"the Dataverse key must hold the company as "
                                        f"'{company.dataverse}.<company code column>'")
    target = maps.get(company.map)
    if target is None:
        report.error(company.dataverse, f"company map {company.map!r} does not exist")
    elif target.company is not None or len(target.dataverse.key) != 1:
        report.error(company.dataverse, f"company map {company.map!r} must be global with a one-column key")
    elif dotted and "." in dotted[0] and dotted[0].split(".", 1)[1] != target.dataverse.key[0]:
        report.error(company.dataverse, f"the company key part {dotted[0]!r} must use "
                                        f"{target.dataverse.key[0]!r}, the key of map {company.map!r}")
    for mapping in table_map.fields:
        if mapping.fno == company.fno or mapping.dataverse == company.dataverse:
            report.error(mapping.label, "the company is part of the key; do not map it as a field")


def _check_fields(table_map: TableMap, report: _Report) -> None:
    targets: dict[tuple[str, str], str] = {}
    for mapping in table_map.fields:
        label = mapping.label
        if mapping.fno is None and mapping.dataverse is None:
            report.error(None, "a field mapping needs an F&O field, a Dataverse column or both")
            continue
        _check_direction(mapping, report)
        for direction, target in (("to_dataverse", mapping.dataverse), ("to_fno", mapping.fno)):
            if target is not None and mapping.direction in ("both", direction):
                if (direction, target) in targets:
                    report.error(label, f"{target!r} is written by two mappings ({targets[direction, target]!r} "
                                        f"and {label!r})")
                targets[direction, target] = label
        try:
            field_types(mapping)
        except TransformTypeError as error:
            report.error(label, f"wrong type: {error}")
            continue
        _check_transforms(mapping, report)


def _check_online(table_map: TableMap, report: _Report) -> None:
    """Online mode writes Dataverse changes to F&O within the user's save; a map that sends nothing to F&O
    has nothing to write there."""
    if table_map.online and not table_map.sends_to("fno"):
        report.error("online", "online mode writes Dataverse changes to F&O within the save, but this map sends "
                               "nothing to F&O (no field or lookup maps that way)")


def _check_direction(mapping: FieldMapping, report: _Report) -> None:
    label = mapping.label
    if mapping.direction == "both" and (mapping.fno is None or mapping.dataverse is None):
        report.error(label, "a two-way mapping needs both an F&O field and a Dataverse column")
        return
    if mapping.direction == "to_dataverse" and mapping.dataverse is None:
        report.error(label, "a mapping to Dataverse needs a Dataverse column")
    if mapping.direction == "to_fno" and mapping.fno is None:
        report.error(label, "a mapping to F&O needs an F&O field")
    source = mapping.fno if mapping.direction == "to_dataverse" else mapping.dataverse
    if mapping.direction != "both" and source is None and not (
        mapping.transform and isinstance(mapping.transform[0], Constant | Default)
    ):
        report.error(label, "without a source field the mapping needs a constant (or default) transform")


def _check_transforms(mapping: FieldMapping, report: _Report) -> None:
    types = field_types(mapping)
    directions: set[str] = {mapping.direction}
    for index, transform in enumerate(mapping.transform):
        for message in transform.definition_problems(types[index], directions):
            report.error(mapping.label, f"transform {transform.type!r}: {message}")
        if mapping.direction == "both" and not transform.invertible and transform.type != "value_map":
            report.error(mapping.label, f"transform {transform.type!r} cannot be inverted, but the mapping "
                                        "is two-way; make it one-way (to_dataverse or to_fno)")


def _check_keys(table_map: TableMap, report: _Report) -> None:
    fno_keys = table_map.key_fields("fno")
    dv_keys = table_map.key_fields("dataverse")
    if len(fno_keys) != len(dv_keys):
        report.error(None, f"the keys do not correspond: F&O {fno_keys} vs Dataverse {dv_keys} "
                           "(company excluded)")
    for part in dv_keys:
        if "." in part:
            report.error(part, "only the company part of the Dataverse key may go through a lookup")
    for fno_key in fno_keys:
        mapping = next((f for f in table_map.fields if f.fno == fno_key), None)
        if mapping is None:
            report.error(fno_key, f"unknown field: key field {fno_key!r} is not mapped")
        elif mapping.direction != "both" or mapping.dataverse not in dv_keys:
            report.error(fno_key, "key fields must be mapped both ways to a column of the Dataverse key")
        elif any(not t.invertible for t in mapping.transform):
            report.error(fno_key, "a key field's transforms must be invertible")
    for dv_key in dv_keys:
        if "." not in dv_key and not any(f.dataverse == dv_key for f in table_map.fields):
            report.error(dv_key, f"unknown field: key column {dv_key!r} is not mapped")


def _check_lookups(table_map: TableMap, maps: Mapping[str, TableMap], report: _Report) -> None:
    mapped_fno = {f.fno for f in table_map.fields if f.fno}
    mapped_dv = {f.dataverse for f in table_map.fields if f.dataverse}
    seen: set[str] = set()
    for lookup in table_map.lookups:
        label = lookup.dataverse
        if label in seen:
            report.error(label, "the lookup is defined twice")
        seen.add(label)
        if label in mapped_dv:
            report.error(label, "is both a field mapping and a lookup")
        if lookup.when_target_enabled and lookup.required:
            report.error(label, "a lookup active only while its target map is enabled cannot be required "
                                "(set \"required\": false)")
        for ours in lookup.fno:
            if ours in mapped_fno and not (ours in table_map.fno.key and lookup.direction == "to_dataverse"):
                report.error(ours, f"is both a field mapping and part of lookup {label!r} (only a key field may "
                                   "be both, with the lookup \"direction\": \"to_dataverse\")")
        target = maps.get(lookup.map)
        if target is None:
            report.error(label, f"lookup references map {lookup.map!r}, which does not exist")
            continue
        expected = set(target.key_fields("fno"))
        if set(lookup.fno.values()) != expected:
            report.error(label, f"lookup must name the key fields {sorted(expected)} of map {target.name!r} "
                                f"(company excluded), got {sorted(lookup.fno.values())}")
        if target.company is not None and table_map.company is None:
            report.error(label, f"a global map cannot reference company-specific map {target.name!r}")


def _check_validity(table_map: TableMap, report: _Report) -> None:
    """The validity window's fields are mapped date/datetime fields; the primary flag is a mapped NoYes or
    boolean field sent to Dataverse."""
    validity = table_map.validity
    if validity is None:
        return
    if validity.valid_to is not None and validity.valid_to == validity.valid_from:
        report.error(validity.valid_to, "validity: valid_from and valid_to must be different fields")
    for role, name in (("valid_from", validity.valid_from), ("valid_to", validity.valid_to)):
        if name is None:
            continue
        mapping = next((f for f in table_map.fields if f.fno == name), None)
        if mapping is None:
            report.error(name, f"unknown field: validity {role} {name!r} is not a mapped F&O field")
        elif mapping.type not in ("date", "datetime"):
            report.error(name, f"wrong type: validity {role} must be a date or datetime field, not {mapping.type}")
    if validity.primary is None:
        return
    mapping = next((f for f in table_map.fields if f.fno == validity.primary), None)
    if mapping is None:
        report.error(validity.primary, f"unknown field: validity primary {validity.primary!r} is not a mapped "
                                       "F&O field")
        return
    if mapping.dataverse is None or mapping.direction == "to_fno":
        report.error(validity.primary, "validity primary must be sent to a Dataverse column (direction both or "
                                       "to_dataverse)")
    try:
        types = field_types(mapping)
    except TransformTypeError:
        return  # reported by _check_fields
    if types[-1] != "boolean":
        report.error(validity.primary, f"wrong type: validity primary must arrive in Dataverse as a boolean, "
                                       f"not {types[-1]} (NoYes fields take the noyes_bool transform)")


def _check_filters(table_map: TableMap, report: _Report) -> None:
    fno_fields = {f.fno for f in table_map.fields if f.fno} | set(table_map.fno.key)
    fno_fields |= {name for lk in table_map.lookups for name in lk.fno}
    dv_fields = {f.dataverse for f in table_map.fields if f.dataverse}
    dv_fields |= {k for k in table_map.dataverse.key if "." not in k}
    dv_fields |= {f"_{lk.dataverse}_value" for lk in table_map.lookups}
    if table_map.company:
        dv_fields.add(f"_{table_map.company.dataverse}_value")
    for side, text, known in (("fno", table_map.fno.filter, fno_fields),
                              ("dataverse", table_map.dataverse.filter, dv_fields)):
        if text is None:
            continue
        where = f"{side}.filter"
        try:
            node = parse_filter(text)
        except FilterError as error:
            report.error(where, f"bad filter: {error}")
            continue
        for name in sorted(filter_fields(node) - known):
            report.error(where, f"unknown field: filter uses {name!r}, which is not a field of the map")
        types = _side_types(table_map, side)
        for leaf in _leaves(node):
            for value in _leaf_values(leaf):
                expected = types.get(leaf.field)
                if expected is not None and not _filter_literal_fits(expected, value, leaf):
                    shown = value.symbol if isinstance(value, EnumSymbol) else value
                    report.error(where, f"wrong type: filter compares {expected} field {leaf.field!r} with "
                                        f"{shown!r}" + (" (compare enums by symbol)" if expected == "enum" else ""))


def _side_types(table_map: TableMap, side: str) -> dict[str, ValueType]:
    types: dict[str, ValueType] = {}
    for mapping in table_map.fields:
        try:
            chain = field_types(mapping)
        except TransformTypeError:
            continue
        if side == "fno" and mapping.fno:
            types[mapping.fno] = chain[0]
        elif side == "dataverse" and mapping.dataverse:
            types[mapping.dataverse] = chain[-1]
    return types


def _leaves(node: Node) -> list[Comparison | Between | AnyOf | StringCall]:
    if isinstance(node, And | Or):
        return [leaf for item in node.items for leaf in _leaves(item)]
    if isinstance(node, Not):
        return _leaves(node.item)
    return [node]


def _leaf_values(leaf: Comparison | Between | AnyOf | StringCall) -> list[Any]:
    if isinstance(leaf, Comparison):
        return [leaf.value]
    if isinstance(leaf, Between):
        return [leaf.low, leaf.high]
    if isinstance(leaf, AnyOf):
        return list(leaf.values)
    return [leaf.value]


def _filter_literal_fits(expected: ValueType, value: Any, leaf: Any) -> bool:
    if value is None:
        return not isinstance(leaf, StringCall)
    if isinstance(leaf, StringCall):
        return expected == "string"
    if isinstance(value, EnumSymbol):
        return expected in ("enum", "string")
    if isinstance(value, bool):
        return expected == "boolean"
    if isinstance(value, int | Decimal):
        return expected in ("integer", "decimal", "choice")
    if isinstance(value, datetime | date):
        return expected in ("date", "datetime")
    return expected in ("string", "enum", "guid", "date", "datetime")


# ------------------------------------------------------------------------------------ live metadata

# Required columns the dual-write solution's plugin fills on create from another column, so a map writing that one
# need not write them: a unit's group (one per F&O unit class), base unit and quantity come from its unit class
# ("Unified product experience": a unit group per unit class, with a default base unit).
FILLED_ON_CREATE: dict[str, tuple[str, frozenset[str]]] = {
    "uom": ("msdyn_externalunitclassname", frozenset({"uomscheduleid", "baseuom", "quantity"})),
}

_COMPATIBLE: dict[str, set[str]] = {
    "string": {"string"},
    "integer": {"integer"},
    "decimal": {"decimal"},
    "boolean": {"boolean"},
    "date": {"date", "datetime"},  # F&O exposes dates as Edm.DateTimeOffset at midnight
    "datetime": {"datetime"},
    "enum": {"enum"},
    "choice": {"choice"},
    "guid": {"guid"},
}


def check_metadata(
    loaded: Sequence[LoadedMap],
    fno: Mapping[str, EntitySchema] | None = None,
    dataverse: Mapping[str, EntitySchema] | None = None,
) -> list[Problem]:
    """Problems of the maps against live schemas: `fno` by entity set, `dataverse` by table."""
    problems: list[Problem] = []
    maps = {item.map.name: item.map for item in loaded}
    for item in loaded:
        report = _Report(item.file, item.map.name, problems)
        table_map = item.map
        fno_schema = dv_schema = None
        if fno is not None:
            fno_schema = fno.get(table_map.fno.entity_set)
            if fno_schema is None:
                report.error(None, f"F&O has no public entity set {table_map.fno.entity_set!r}")
        if dataverse is not None:
            dv_schema = dataverse.get(table_map.dataverse.table)
            if dv_schema is None:
                report.error(None, f"Dataverse has no table {table_map.dataverse.table!r}")
            elif dv_schema.entity_set and dv_schema.entity_set != table_map.dataverse.entity_set:
                report.error(None, f"the entity set of {table_map.dataverse.table!r} is "
                                   f"{dv_schema.entity_set!r}, not {table_map.dataverse.entity_set!r}")
        if fno_schema is not None:
            _check_fno(table_map, fno_schema, report)
        if dv_schema is not None:
            _check_dataverse(table_map, maps, dv_schema, report)
        for mapping in table_map.fields:
            try:
                types = field_types(mapping)
            except TransformTypeError:
                continue  # reported by validate_maps
            _check_column(mapping, "fno", mapping.fno, types[0], fno_schema, report)
            _check_column(mapping, "dataverse", mapping.dataverse, types[-1], dv_schema, report)
            if fno_schema is not None and dv_schema is not None:
                _check_lengths_fit(mapping, fno_schema, dv_schema, report)
    return problems


def _writes(table_map: TableMap, side: str) -> bool:
    """Whether the map creates rows on `side` (keys alone are mapped both ways in every map)."""
    direction = "to_fno" if side == "fno" else "to_dataverse"
    keys = set(table_map.fno.key) | set(table_map.dataverse.key)
    return any(f.direction in ("both", direction) and (f.fno not in keys and f.dataverse not in keys)
               for f in table_map.fields) or bool(table_map.lookups_for(direction))  # type: ignore[arg-type]


def _check_fno(table_map: TableMap, schema: EntitySchema, report: _Report) -> None:
    if schema.keys and set(schema.keys[0]) != set(table_map.fno.key):
        report.error(None, f"the F&O key of {schema.name} is {list(schema.keys[0])}, the map says "
                           f"{table_map.fno.key}")
    for name in table_map.fno.key:
        if name not in schema.columns:
            report.error(name, f"unknown field: {schema.name} has no field {name!r}")
    for lookup in table_map.lookups:
        for ours in lookup.fno:
            if ours not in schema.columns:
                report.error(ours, f"unknown field: {schema.name} has no field {ours!r} (lookup {lookup.dataverse!r})")


def _check_dataverse(table_map: TableMap, maps: Mapping[str, TableMap], schema: EntitySchema,
                     report: _Report) -> None:
    written = {f.dataverse for f in table_map.fields_for("to_dataverse") if f.dataverse}
    navs = [lk.dataverse for lk in table_map.lookups]
    if table_map.company is not None:
        navs.append(table_map.company.dataverse)
    for nav in navs:
        bound = schema.navigation.get(nav)
        if bound is None:
            report.error(nav, f"unknown field: {schema.name} has no lookup (navigation property) {nav!r}")
            continue
        attribute, target_table = bound
        written.add(attribute)
        target_name = next((lk.map for lk in table_map.lookups if lk.dataverse == nav),
                           table_map.company.map if table_map.company else None)
        target = maps.get(target_name or "")
        if target is not None and target.dataverse.table != target_table:
            report.error(nav, f"the lookup points to table {target_table!r}, but map {target.name!r} "
                              f"syncs {target.dataverse.table!r}")
    # The company part 'msdyn_company.cdm_companycode' is the lookup column in the alternate key.
    key_columns = {schema.navigation.get(k.split(".")[0], (k,))[0] if "." in k else k
                   for k in table_map.dataverse.key}
    if schema.keys and not any(set(key) == key_columns for key in schema.keys):
        report.warning(None, f"{schema.name} has no alternate key on {sorted(key_columns)}; "
                             "the integration key needs one for upserts")
    if _writes(table_map, "dataverse"):
        source, filled = FILLED_ON_CREATE.get(schema.name, ("", frozenset()))
        filled = filled if source in written else frozenset()
        for column in schema.columns.values():
            if column.required and not column.read_only and column.name not in written | filled:
                report.error(column.name, f"required column {column.name!r} of {schema.name} is not written "
                                          "by the map")


def _check_column(mapping: FieldMapping, side: str, name: str | None, value_type: ValueType,
                  schema: EntitySchema | None, report: _Report) -> None:
    if name is None or schema is None:
        return
    column = schema.columns.get(name)
    system = "F&O" if side == "fno" else "Dataverse"
    if column is None:
        report.error(name, f"unknown field: {system} {schema.name} has no field {name!r}")
        return
    if column.type not in _COMPATIBLE[value_type]:
        report.error(name, f"wrong type: the map treats it as {value_type}, {system} has "
                           f"{column.source_type or column.type}")
        return
    writes_here = mapping.direction in ("both", "to_fno" if side == "fno" else "to_dataverse")
    if writes_here and column.read_only:
        report.error(name, f"{system} field {name!r} is read-only but the map writes it")
    if writes_here and column.type == "string" and column.max_length:
        _check_length(mapping, side, name, column, report)
    if (writes_here and value_type == "decimal" and column.scale is not None
            and any(t.type == "decimal_scale" and t.scale > column.scale for t in mapping.transform)):
        report.warning(name, f"{system} keeps {column.scale} decimal places; the map sends more")


def _check_lengths_fit(mapping: FieldMapping, fno: EntitySchema, dataverse: EntitySchema, report: _Report) -> None:
    """Text that fits the source may not fit the target: say so unless a fit_length handles it."""
    if mapping.fno is None or mapping.dataverse is None or any(isinstance(t, FitLength) for t in mapping.transform):
        return
    fno_column, dv_column = fno.columns.get(mapping.fno), dataverse.columns.get(mapping.dataverse)
    if fno_column is None or dv_column is None or fno_column.type != "string" or dv_column.type != "string":
        return
    for direction, source, target, system in (("to_dataverse", fno_column, dv_column, "Dataverse"),
                                              ("to_fno", dv_column, fno_column, "F&O")):
        if (mapping.direction in ("both", direction) and source.max_length and target.max_length
                and source.max_length > target.max_length):
            report.warning(target.name, f"{system} allows {target.max_length} characters, the source "
                                        f"{source.max_length}: longer values will be refused (add fit_length "
                                        "to truncate)")


def _check_length(mapping: FieldMapping, side: str, name: str, column: Column, report: _Report) -> None:
    limit = column.max_length or 0
    for transform in mapping.transform:
        if isinstance(transform, Constant | Default) and isinstance(transform.value, str) and len(
                transform.value) > limit:
            report.error(name, f"{transform.type} {transform.value!r} is longer than the maximum length {limit}")
        if isinstance(transform, FitLength) and transform.max_length > limit:
            report.error(name, f"fit_length {transform.max_length} exceeds the maximum length {limit}")
