"""Virtual table definitions: the committed JSON Schema is the generated one, the shipped files load, and wrong
definitions fail naming file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.virtual.catalog import DefinitionError, load_file, load_folder
from core.virtual.schema import virtual_table_schema_text

ROOT = Path(__file__).resolve().parents[3]
FOLDER = ROOT / "virtualtables"


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = (FOLDER / "virtualtable.schema.json").read_text()
    assert committed == virtual_table_schema_text(), (
        "run: python -m core.virtual.schema > virtualtables/virtualtable.schema.json"
    )


def test_the_shipped_definitions_load_one_per_source_kind() -> None:
    tables = load_folder(FOLDER)
    kinds = {t.source.kind for t in tables}
    assert kinds == {"sql", "fno", "tables"}
    assert {t.entity_set for t in tables} >= {"Products", "OrderLines", "FnoCustomerGroups", "Warehouses"}


def _write(tmp_path: Path, **changes: object) -> Path:
    data = json.loads((FOLDER / "products.json").read_text())
    data.update(changes)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"columns": [{"name": "X", "type": "Edm.Int16"}]}, "columns.0.type", "Edm.Int32"),
        ({"key": {"kind": "column", "column": "Name"}}, "(file)", "Edm.Guid"),
        (
            {"key": {"kind": "uuid5", "columns": ["Nope"], "namespace": "5b4e1f0a-6a53-4f5e-9d3c-0c6f1e2a7b10"}},
            "(file)",
            "Nope",
        ),
        ({"operations": ["create"]}, "(file)", "read"),
        ({"notify": {"changed_column": "Name"}}, "(file)", "notify.changed_column: 'Name' must be a date-time"),
        ({"notify": {"changed_column": "ModifiedOn", "deleted_column": "Name"}}, "(file)", "must be a Boolean"),
        ({"columns": [{"name": "ProductId", "type": "Edm.Guid"}]}, "(file)", "nullable: false"),
        ({"page_size": 900, "max_page_size": 100}, "(file)", "max_page_size"),
        ({"entity_set": "Bad Name"}, "entity_set", "letter"),
        ({"colour": "blue"}, "colour", "Extra"),
    ],
)
def test_a_wrong_definition_names_file_and_field(
    tmp_path: Path, changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as raised:
        load_file(_write(tmp_path, **changes))
    text = str(raised.value)
    assert f"bad.json: {field}" in text
    assert words in text


def test_two_files_with_one_entity_set_are_refused(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text((FOLDER / "products.json").read_text())
    with pytest.raises(DefinitionError, match=r"also defined in a\.json"):
        load_folder(tmp_path)
