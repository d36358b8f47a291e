"""The committed JSON Schema is what the model generates (fails when someone forgets)."""

from pathlib import Path

from core.cli.main import main
from core.maps.schema import map_json_schema, map_json_schema_text

COMMITTED = Path(__file__).resolve().parents[3] / "maps" / "map.schema.json"


def test_committed_schema_is_current():
    assert COMMITTED.read_text(encoding="utf-8") == map_json_schema_text(), (
        "maps/map.schema.json is stale: run `dualwrite maps schema`")


def test_schema_describes_the_closed_transform_set():
    schema = map_json_schema()
    transform_kinds = {d["properties"]["type"]["const"] for name, d in schema["$defs"].items()
                       if "type" in d.get("properties", {}) and "const" in d["properties"]["type"]}
    assert transform_kinds == {"value_map", "default", "constant", "trim", "upper", "lower", "fit_length",
                               "decimal_scale", "date_datetime", "noyes_bool"}
    assert schema["additionalProperties"] is False


def test_schema_check_command(tmp_path, capsys):
    stale = tmp_path / "map.schema.json"
    stale.write_text("{}")
    assert main(["maps", "schema", "--check", "--output", str(stale)]) == 1
    assert main(["maps", "schema", "--output", str(stale)]) == 0
    assert main(["maps", "schema", "--check", "--output", str(stale)]) == 0
