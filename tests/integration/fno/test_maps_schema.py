"""Every F&O-side name the shipped maps use exists in the simulator's entity schema, with a fitting type.

The maps are read as plain JSON on purpose: this checks the simulator against the files, not against
the engine's map model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devstack.fno.schema import Entity, Schema, load_schema

MAPS = sorted(p for p in (Path(__file__).resolve().parents[3] / "maps").glob("*.json")
              if not p.name.endswith(".schema.json"))  # map.schema.json describes maps, it is not one
# map field type -> simulator field types it may bind to
COMPATIBLE = {
    "string": {"string"},
    "decimal": {"real"},
    "integer": {"int"},
    "enum": {"enum"},
    "date": {"date"},
    "datetime": {"utcdatetime"},
}
_FILTER_FIELD = re.compile(r"([A-Za-z_]\w*)\s*(?:==|!=|<=|>=|<|>|\s(?:eq|ne|gt|ge|lt|le)\s)")
_FILTER_ENUM_COMPARE = re.compile(r"([A-Za-z_]\w*)\s*(?:==|!=)\s*\"([^\"]*)\"")


@pytest.fixture(scope="module")
def schema() -> Schema:
    return load_schema()


def _maps() -> dict[str, dict[str, Any]]:
    return {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in MAPS}


def _entity(schema: Schema, doc: dict[str, Any]) -> Entity:
    name = doc["fno"]["entity_set"]
    entity = schema.entity(name)
    assert entity is not None, f"map {doc['name']}: entity set {name} is not in the simulator schema"
    return entity


def _enum_values(transforms: list[dict[str, Any]]) -> list[str]:
    values: list[str] = []
    for t in transforms:
        if t.get("type") == "value_map":
            values += [p["fno"] for p in t.get("pairs", []) if p.get("fno") is not None]
            unknown = t.get("unknown") or {}
            if unknown.get("fno") is not None:
                values.append(unknown["fno"])
        if t.get("type") == "constant" and isinstance(t.get("value"), str):
            values.append(t["value"])
    return values


def test_there_are_maps_to_check() -> None:
    assert len(MAPS) >= 9


@pytest.mark.parametrize("path", MAPS, ids=[p.stem for p in MAPS])
def test_map_names_exist_in_schema(path: Path, schema: Schema) -> None:
    doc = json.loads(path.read_text())
    entity = _entity(schema, doc)
    where = f"map {doc['name']} ({entity.collection})"
    assert doc["fno"]["key"] == entity.keys, f"{where}: key {doc['fno']['key']} != simulator key {entity.keys}"
    company = doc.get("company")
    assert bool(company) == entity.company_specific, f"{where}: company striping differs"
    if company:
        assert company["fno"] == "dataAreaId"
    for mapping in doc.get("fields", []):
        name = mapping.get("fno")
        if not name:
            continue
        fld = entity.fields.get(name)
        assert fld is not None, f"{where}: field {name} is not in the simulator schema"
        kind = mapping.get("type", "string")
        assert kind in COMPATIBLE, f"{where}: unknown map field type {kind} for {name}"
        assert fld.type in COMPATIBLE[kind], f"{where}: {name} is {fld.type} in the simulator, {kind} in the map"
        transforms = mapping.get("transform") or []
        if any(t.get("type") == "noyes_bool" for t in transforms):
            assert fld.enum == "NoYes", f"{where}: {name} uses noyes_bool but its enum is {fld.enum}"
        if fld.type == "enum":
            assert fld.enum is not None
            symbols = schema.enums[fld.enum]
            for value in _enum_values(transforms):
                assert value in symbols, f"{where}: {value!r} is not a symbol of {fld.enum} ({name})"
    maps = _maps()
    for lookup in doc.get("lookups", []):
        target_doc = maps.get(lookup["map"])
        assert target_doc is not None, f"{where}: lookup to unknown map {lookup['map']}"
        target = _entity(schema, target_doc)
        for local, remote in lookup["fno"].items():
            assert local in entity.fields, f"{where}: lookup field {local} is not in the simulator schema"
            assert remote in target.fields, f"{where}: lookup target {target.collection}.{remote} is missing"
    filter_text = doc["fno"].get("filter") or ""
    for name in _FILTER_FIELD.findall(filter_text):
        assert name in entity.fields, f"{where}: filter field {name} is not in the simulator schema"
    for name, literal in _FILTER_ENUM_COMPARE.findall(filter_text):
        fld = entity.fields[name]
        if fld.type == "enum":
            assert fld.enum is not None
            assert literal in schema.enums[fld.enum], f"{where}: filter value {literal} is not a {fld.enum} symbol"
