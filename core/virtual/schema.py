"""The JSON Schema of a virtual table file, generated from the pydantic model and committed as
virtualtables/virtualtable.schema.json (editors validate definitions against it; a test keeps it current)."""

from __future__ import annotations

import json
from typing import Any

from core.virtual.model import VirtualTable

SCHEMA_ID = "https://github.com/d365-dual-write/virtualtables/virtualtable.schema.json"


def virtual_table_schema() -> dict[str, Any]:
    schema = VirtualTable.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def virtual_table_schema_text() -> str:
    return json.dumps(virtual_table_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m core.virtual.schema > virtualtables/virtualtable.schema.json
    import sys

    sys.stdout.write(virtual_table_schema_text())
