"""Values in comparable form: what a link row remembers of each side, and how changes are diffed.

Every value is reduced to a canonical JSON-able form, so that 25000 and 25000.0000000000, a
datetime in any zone, or a lookup spelt as a key reference all compare equal to what was
written before. Link rows store these forms; hashes are taken over them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from core.maps import KeyRef, TableMap
from core.maps.convert import field_types
from core.maps.keys import decimal_text
from core.maps.model import Side
from core.maps.values import MapValueError, coerce


def canon(value: Any) -> Any:
    """The canonical comparable (and JSON-able) form of a value."""
    if value is None or value == "":
        return None  # F&O has no nulls: its empty string and Dataverse's null are the same value
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return {"d": decimal_text(value)}
    if isinstance(value, datetime):
        return {"t": value.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, KeyRef):
        return {"ref": value.map, "key": [[part, canon(v)] for part, v in value.values]}
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canon(v) for k, v in value.items()}
    raise TypeError(f"cannot compare a {type(value).__name__}")


def canon_all(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: canon(value) for name, value in values.items()}


def values_hash(values: Mapping[str, Any]) -> str:
    """Hash of already-canonical values (they are JSON as they stand)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed(target_values: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `target_values` (real values) that differ from `known` (canonical forms)."""
    return {name: value for name, value in target_values.items()
            if name not in known or canon(value) != known[name]}


def side_values(table_map: TableMap, side: Side, record: Mapping[str, Any]) -> dict[str, Any]:
    """The mapped fields (any direction) of `side` present in `record`, typed and canonical: what the
    link remembers that side holds. Lookups: Dataverse keeps the KeyRef under the navigation
    property, F&O the referencing fields; the company is kept under its field too."""
    out: dict[str, Any] = {}
    company = table_map.company
    if company is not None:
        company_field = company.fno if side == "fno" else company.dataverse
        if company_field in record:
            value = record[company_field]
            out[company_field] = canon(value.lower() if side == "fno" and isinstance(value, str) else value)
    for mapping in table_map.fields:
        name = mapping.fno if side == "fno" else mapping.dataverse
        if name is None or name not in record:
            continue
        types = field_types(mapping)
        value_type = types[0] if side == "fno" else types[-1]
        try:
            out[name] = canon(coerce(value_type, record[name]))
        except MapValueError:
            out[name] = canon(record[name]) if not isinstance(record[name], float) else str(record[name])
    for lookup in table_map.lookups:
        if side == "dataverse":
            if lookup.dataverse in record and (record[lookup.dataverse] is None
                                               or isinstance(record[lookup.dataverse], KeyRef)):
                out[lookup.dataverse] = canon(record[lookup.dataverse])
        else:
            for name in lookup.fno:
                if name in record:
                    value = record[name]
                    out[name] = canon(value)
    return out
