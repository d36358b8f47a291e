"""Deliberately broken map files: each gives a clear problem naming file, map and field."""

import json
from pathlib import Path

import pytest

from core.cli.main import main
from core.maps import load_maps, validate_maps

HERE = Path(__file__).parent
BROKEN = HERE / "broken"
SHIPPED_COMPANY = HERE.parents[2] / "maps" / "legal-entities.json"

CASES = [
    ("unknown-field.json", "unknown-field", "CustomerGroupID",
     "unknown field: key field 'CustomerGroupID' is not mapped"),
    ("non-invertible-value-map.json", "non-invertible-value-map", "OnHoldStatus",
     "value map is not invertible (values 1 appear more than once) but the mapping is two-way"),
    ("bad-filter.json", "bad-filter", "fno.filter", "bad filter: expected ')', found the end at column 31"),
    ("wrong-type.json", "wrong-type", "CreditLimit", "wrong type: transform 'noyes_bool' needs an enum value"),
    ("bad-structure.json", "bad-structure", "Name", "fields[1].direction: Input should be 'both', 'to_dataverse'"),
    ("bad-structure.json", "bad-structure", "Symbol", "Input tag 'run_python' found using 'type' does not match"),
    ("online-one-way.json", "online-one-way", "online", "online mode writes Dataverse changes to F&O within the "
                                                         "save, but this map sends nothing to F&O"),
]


def _problems(*paths):
    result = load_maps(paths)
    return result.problems + validate_maps(result.maps)


@pytest.mark.parametrize(("file", "map_name", "field", "message"), CASES)
def test_broken_map_is_reported_by_name(file, map_name, field, message):
    problems = _problems(SHIPPED_COMPANY, BROKEN / file)
    matching = [p for p in problems if p.map == map_name and p.field == field and message in p.message]
    assert matching, problems
    text = str(matching[0])
    assert text.startswith(str(BROKEN / file))
    assert f"map {map_name!r}" in text and f"field {field!r}" in text


def test_cycle_without_optional_lookup():
    problems = _problems(BROKEN / "cycle")
    assert {(p.map, p.field) for p in problems} == {("alpha", "new_betaid"), ("beta", "new_alphaid")}
    assert all("cycle alpha -> beta -> alpha has no optional lookup" in p.message for p in problems)


def test_filter_literal_of_the_wrong_type(tmp_path):
    data = json.loads((BROKEN / "bad-filter.json").read_text())
    data["fno"]["filter"] = "(PartyType = 1) && startswith(CustomerAccount, 'US')"
    data["dataverse"]["filter"] = "accountnumber gt 3"
    path = tmp_path / "typed-filter.json"
    path.write_text(json.dumps(data))
    messages = {(p.field, p.message) for p in _problems(SHIPPED_COMPANY, path)}
    assert messages == {
        ("fno.filter", "wrong type: filter compares enum field 'PartyType' with 1 (compare enums by symbol)"),
        ("dataverse.filter", "wrong type: filter compares string field 'accountnumber' with 3"),
    }


def test_not_json_names_the_file_and_position():
    (problem,) = _problems(BROKEN / "not-json.json")
    assert problem.file.endswith("not-json.json")
    assert "not valid JSON" in problem.message and "line 1" in problem.message


def test_missing_references():
    problems = _problems(BROKEN / "wrong-type.json")  # without the legal-entities map
    assert any(p.field == "msdyn_company" and "company map 'legal-entities' does not exist" in p.message
               for p in problems)


def test_cli_reports_every_broken_file_and_fails(capsys):
    assert main(["maps", "validate", str(SHIPPED_COMPANY), str(BROKEN)]) == 1
    err = capsys.readouterr().err
    for file, map_name, field, _ in CASES:
        assert f"{BROKEN / file}: map {map_name!r}, field {field!r}" in err
    assert "not-json.json: error: not valid JSON" in err


def test_cli_validates_the_shipped_maps(capsys):
    assert main(["maps", "validate", str(HERE.parents[2] / "maps")]) == 0
    shipped = [p for p in (HERE.parents[2] / "maps").glob("*.json") if p.name != "map.schema.json"]
    assert f"ok: {len(shipped)} map(s)" in capsys.readouterr().out


def test_cli_order(capsys):
    assert main(["maps", "order", str(HERE.parents[2] / "maps")]) == 0
    out = capsys.readouterr().out
    assert "sync customers (without primarycontactid; patched below)" in out
    assert "patch customers.primarycontactid -> contacts" in out
    assert main(["maps", "order", str(BROKEN / "cycle")]) == 1
