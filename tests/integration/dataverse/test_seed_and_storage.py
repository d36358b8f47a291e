"""The demo seed (deterministic, consistent references, two companies) and file-backed storage."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devstack.dataverse.schema import load_schema
from devstack.dataverse.seed import seed_id
from tests.fixtures.dataverse import start_dataverse

pytestmark = pytest.mark.integration
SEEDED = {"cdm_companies": 2, "transactioncurrencies": 6, "msdyn_paymentterms": 8, "msdyn_customergroups": 10,
          "msdyn_vendorgroups": 8, "msdyn_vendors": 50, "products": 40, "msdyn_sharedproductdetails": 80}


def test_seed_counts_ids_and_references(dataverse):
    schema = load_schema()
    with dataverse.client() as api:
        codes = {c["cdm_companycode"] for c in api.get("cdm_companies").json()["value"]}
        assert {"usmf", "demf"} <= codes
        for entity_set, count in SEEDED.items():
            assert api.get(f"{entity_set}/$count").status_code == 200
            rows = api.get(entity_set, params={"$filter": "_createdby_value eq 7f3e2a10-0000-4000-8000-000000000001"})
            assert len(rows.json()["value"]) == count, entity_set
        seeded_accounts = api.get("accounts", params={
            "$filter": "_createdby_value eq 7f3e2a10-0000-4000-8000-000000000001",
            "$select": "accountnumber,_msdyn_company_value,_primarycontactid_value,_transactioncurrencyid_value,"
                       "_msdyn_customergroupid_value,_msdyn_paymentterm_value"}).json()["value"]
        assert len(seeded_accounts) == 100
        us001 = next(a for a in seeded_accounts if a["accountnumber"] == "US-001")
        assert us001["accountid"] == seed_id("account", "usmf", "US-001")
        # Every lookup of every seeded business row points at an existing row.
        for table in schema.tables.values():
            if table.system:
                continue
            lookups = [c for c in table.columns.values() if c.is_lookup and not c.read_only]
            if not lookups:
                continue
            rows = api.get(table.entity_set, params={
                "$select": ",".join(c.value_property for c in lookups),
                "$filter": "_createdby_value eq 7f3e2a10-0000-4000-8000-000000000001"}).json()["value"]
            for row in rows:
                for column in lookups:
                    ref = row[column.value_property]
                    if ref is None:
                        continue
                    found = [t for t in column.targets
                             if api.get(f"{schema.tables[t].entity_set}({ref})").status_code == 200]
                    assert found, f"{table.logical_name}.{column.name} -> {ref}"
                    if column.name in ("msdyn_company", "msdyn_companyid"):
                        assert ref in (seed_id("cdm_company", "usmf"), seed_id("cdm_company", "demf"))


def test_file_database_survives_a_restart(tmp_path: Path):
    db = tmp_path / "dv.sqlite"
    number = "P-" + uuid.uuid4().hex[:6]
    first = start_dataverse("--db", str(db), seed=True)
    try:
        with first.client() as api:
            assert api.post("accounts", json={"name": "kept", "accountnumber": number}).status_code == 204
    finally:
        first.stop()
    second = start_dataverse("--db", str(db), seed=True)
    try:
        with second.client() as api:
            rows = api.get("accounts", params={"$filter": f"accountnumber eq '{number}'"}).json()["value"]
            assert [r["name"] for r in rows] == ["kept"]
            assert api.get("cdm_companies/$count").text == "2"  # seeding again added nothing
    finally:
        second.stop()
