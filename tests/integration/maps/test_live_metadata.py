"""Maps checked against the live metadata of the Dataverse and F&O simulators over HTTP."""

import json
from pathlib import Path

import httpx
import pytest

from core.cli.main import main
from core.connectors.metadata import (
    MetadataError,
    MetadataUnavailable,
    fetch_dataverse_schemas,
    fetch_fno_schemas,
)
from core.maps import check_metadata, load_maps
from devstack.processes import free_port

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[3] / "maps"


def _cli(dataverse, fno, *paths: str) -> int:
    return main(["maps", "validate", *paths, "--dataverse-url", dataverse.url, "--fno-url", fno.url,
                 "--dataverse-token", dataverse.token(), "--fno-token", fno.token()])


def test_shipped_maps_match_both_simulators(dataverse, fno, capsys):
    assert _cli(dataverse, fno, str(SHIPPED)) == 0, capsys.readouterr().err
    shipped = len([p for p in SHIPPED.glob("*.json") if p.name != "map.schema.json"])
    assert f"ok: {shipped} map(s) against live metadata" in capsys.readouterr().out


async def test_readers_build_neutral_schemas(dataverse, fno):
    async with httpx.AsyncClient(timeout=30) as client:
        tables = await fetch_dataverse_schemas(client, dataverse.base_url, ["account", "contact", "no_such_table"],
                                               dataverse.token())
        entities = await fetch_fno_schemas(client, fno.url, fno.token())
    assert set(tables) == {"account", "contact"}  # a missing table is left out, reported by the validator
    account, contact = tables["account"], tables["contact"]
    assert account.entity_set == "accounts"
    assert account.columns["creditlimit"].type == "decimal"
    assert account.columns["name"].type == "string" and account.columns["name"].max_length
    assert account.navigation["msdyn_company"] == ("msdyn_company", "cdm_company")
    assert contact.navigation["parentcustomerid_account"] == ("parentcustomerid", "account")
    customers = entities["CustomersV3"]
    assert customers.keys == (("dataAreaId", "CustomerAccount"),)
    assert customers.columns["CreditLimitIsMandatory"].type == "enum"
    assert customers.columns["CreditLimitIsMandatory"].enum_type == "NoYes"
    assert customers.columns["CreditLimit"].type == "decimal"
    assert customers.enums["NoYes"] == ("No", "Yes")


async def test_wrong_maps_are_caught_by_live_metadata(dataverse, fno, tmp_path):
    data = json.loads((SHIPPED / "customers.json").read_text())
    by_fno = {f["fno"]: f for f in data["fields"] if f["fno"]}
    by_fno["OrganizationName"].update(fno="OrganisationName",  # British spelling: no such F&O field
                                      dataverse="accountname")  # no such column; 'name' (required) is unwritten
    by_fno["AddressCity"]["type"] = "integer"  # text on both sides
    by_fno["LanguageId"]["transform"] = [{"type": "constant", "value": "x" * 50}]  # F&O allows 7 characters
    data["lookups"][0]["dataverse"] = "msdyn_customergroup"  # not the navigation property's name
    (tmp_path / "customers.json").write_text(json.dumps(data))
    loaded = load_maps([tmp_path / "customers.json"]).maps
    async with httpx.AsyncClient(timeout=30) as client:
        tables = await fetch_dataverse_schemas(client, dataverse.url, ["account"], dataverse.token())
        entities = await fetch_fno_schemas(client, fno.data_url, fno.token())
    problems = {(p.field, p.message.split(":")[0]) for p in check_metadata(loaded, fno=entities, dataverse=tables)}
    assert ("OrganisationName", "unknown field") in problems
    assert ("accountname", "unknown field") in problems
    assert ("AddressCity", "wrong type") in problems
    assert ("address1_city", "wrong type") in problems
    assert ("msdyn_customergroup", "unknown field") in problems
    assert ("name", "required column 'name' of account is not written by the map") in problems
    assert ("LanguageId", "constant 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is longer than the maximum "
                          "length 7") in problems


def test_cli_reports_live_problems_with_file_map_field(dataverse, fno, tmp_path, capsys):
    data = json.loads((SHIPPED / "currencies.json").read_text())
    data["fields"][2]["dataverse"] = "currencysymbl"
    path = tmp_path / "currencies.json"
    path.write_text(json.dumps(data))
    assert _cli(dataverse, fno, str(path)) == 1
    err = capsys.readouterr().err
    where = f"{path}: map 'currencies', field 'currencysymbl'"
    assert f"{where}: error: unknown field: Dataverse transactioncurrency" in err
    assert "required column 'currencysymbol'" in err


async def test_reader_errors_are_typed(dataverse):
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(MetadataUnavailable, match="cannot reach"):
            await fetch_fno_schemas(client, f"http://127.0.0.1:{free_port()}")
        with pytest.raises(MetadataError, match="answered 401") as refused:  # no bearer token at all
            await fetch_dataverse_schemas(client, dataverse.url, ["account"], token=None)
        assert not isinstance(refused.value, MetadataUnavailable)
