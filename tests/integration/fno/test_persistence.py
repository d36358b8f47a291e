"""`--db FILE` keeps state across restarts; re-seeding an existing database changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fixtures.fno import start_fno

pytestmark = pytest.mark.integration


def test_rows_and_registry_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "fno.sqlite"
    sim = start_fno("fno-persist", db=db)
    try:
        created = httpx.post(sim.data_url + "CustomerGroups", headers=sim.headers(),
                             json={"CustomerGroupId": "P-1", "Description": "kept"})
        assert created.status_code == 201
        endpoint = httpx.post(sim.admin_url + "endpoints", json={"name": "kept", "type": "https",
                                                                  "url": "http://127.0.0.1:9/x"})
        assert endpoint.status_code == 201
    finally:
        sim.process.stop()
    again = start_fno("fno-persist", db=db)
    try:
        row = httpx.get(again.data_url + "CustomerGroups(dataAreaId='usmf',CustomerGroupId='P-1')",
                        headers=again.headers())
        assert row.status_code == 200 and row.json()["Description"] == "kept"
        count = httpx.get(again.data_url + "LegalEntities/$count", headers=again.headers())
        assert count.text == "2"  # the seed did not run twice
        assert [e["name"] for e in httpx.get(again.admin_url + "endpoints").json()] == ["kept"]
    finally:
        again.process.stop()
