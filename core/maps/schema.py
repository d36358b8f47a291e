"""The JSON Schema of a map file, generated from the pydantic model and committed as
maps/map.schema.json so editors validate maps as users type (see the `$schema` key)."""

from __future__ import annotations

import json
from typing import Any

from core.maps.model import TableMap

SCHEMA_ID = "https://github.com/d365-dual-write/maps/map.schema.json"


def map_json_schema() -> dict[str, Any]:
    schema = TableMap.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def map_json_schema_text() -> str:
    """The committed file's exact text: stable key order, trailing newline."""
    return json.dumps(map_json_schema(), indent=2, ensure_ascii=False) + "\n"
