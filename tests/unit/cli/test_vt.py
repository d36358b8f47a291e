"""`dualwrite vt metadata|query` against a real OData v4 service over HTTP (tests/fixtures/odata_provider.py, served
at /api/odata/ with its key in the x-vt-key header, as the engine's endpoint is)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli.main import main
from tests.fixtures.odata_provider import ODataProvider, serve


@pytest.fixture(scope="module")
def endpoint() -> Iterator[ODataProvider]:
    with serve(ODataProvider(key_name="x-vt-key", key_value="vt-secret", root="/api/odata/")) as running:
        running.seed(12)
        yield running


def args(endpoint: ODataProvider, *rest: str, key: str = "vt-secret") -> list[str]:
    return [*rest, "--url", f"http://127.0.0.1:{endpoint.port}", "--vt-key", key]


def test_metadata_prints_the_csdl_and_sends_the_key(
    endpoint: ODataProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.clear()
    assert main(args(endpoint, "vt", "metadata")) == 0
    assert '<EntitySet Name="People"' in capsys.readouterr().out
    assert endpoint.seen()[-1].path == "/api/odata/$metadata"
    assert endpoint.seen()[-1].headers["x-vt-key"] == "vt-secret"


def test_metadata_sets_lists_the_service_document(endpoint: ODataProvider, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args(endpoint, "vt", "metadata", "--sets")) == 0
    assert capsys.readouterr().out == "People\tPeople\n"


def test_a_wrong_key_is_an_error_with_the_services_message(
    endpoint: ODataProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args(endpoint, "vt", "metadata", key="nope")) == 1
    err = capsys.readouterr().err
    assert "401" in err and "Missing or wrong x-vt-key" in err


def test_query_passes_the_options_and_prints_json(endpoint: ODataProvider, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        args(
            endpoint,
            "vt",
            "query",
            "People",
            "--filter",
            "City eq 'Oslo'",
            "--select",
            "FullName,City",
            "--top",
            "3",
            "--count",
            "--json",
        )
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 6 and len(out["value"]) == 3
    assert all(set(r) == {"FullName", "City"} and r["City"] == "Oslo" for r in out["value"])
    sent = endpoint.seen()[-1].query
    assert sent["$filter"] == "City eq 'Oslo'" and sent["$top"] == "3" and sent["$count"] == "true"


def test_query_all_follows_next_links(endpoint: ODataProvider, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint.clear()
    assert main(args(endpoint, "vt", "query", "People", "--page-size", "5", "--all", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["value"]) == 12 and out["more"] is False
    assert len(endpoint.seen()) == 3
    assert main(args(endpoint, "vt", "query", "People", "--page-size", "5")) == 0
    assert "5 row(s); more pages: --all" in capsys.readouterr().out


def test_query_by_id_and_a_missing_one(endpoint: ODataProvider, capsys: pytest.CaptureFixture[str]) -> None:
    row_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "person/3"))
    assert main(args(endpoint, "vt", "query", "People", "--id", row_id, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["value"][0]["FullName"] == "Person 003"
    assert main(args(endpoint, "vt", "query", "People", "--id", str(uuid.uuid4()))) == 1
    assert "No person with Id" in capsys.readouterr().err


def test_an_engine_that_is_not_running_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    from devstack.processes import free_port

    assert main(["vt", "metadata", "--url", f"http://127.0.0.1:{free_port()}", "--vt-key", "k"]) == 1
    assert "cannot reach the OData endpoint" in capsys.readouterr().err


SHIPPED = Path(__file__).resolve().parents[3] / "virtualtables"


def test_validate_accepts_the_shipped_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vt", "validate", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "Products:" in out and out.rstrip().endswith("virtual table(s)")


def test_validate_names_the_file_and_field_of_a_bad_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.loads((SHIPPED / "products.json").read_text())
    good["columns"][0]["type"] = "Edm.Int16"  # a type Dataverse's OData v4 Data Provider cannot map
    (tmp_path / "broken.json").write_text(json.dumps(good))
    assert main(["vt", "validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "broken.json: columns.0.type" in err
    assert main(["vt", "validate", str(tmp_path / "empty")]) == 2


def test_the_local_stacks_key_comes_from_its_settings(tmp_path: Path) -> None:
    from core.cli.vt import local_vt_key

    assert local_vt_key(tmp_path) is None
    (tmp_path / "local.settings.sample.json").write_text(json.dumps({"Values": {"VIRTUAL_TABLES_KEY": "sample-key"}}))
    assert local_vt_key(tmp_path) == "sample-key"
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"VIRTUAL_TABLES_KEY": "mine"}}))
    assert local_vt_key(tmp_path) == "mine"
