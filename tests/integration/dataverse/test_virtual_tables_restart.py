"""A virtual table defined in a simulator kept in a database file (as `make run` keeps .devstack/dataverse.sqlite) is
still a virtual table after a restart, with its webhook filters, and registering it again changes nothing."""

from __future__ import annotations

from pathlib import Path

from devstack.virtualtables import DataSource, ensure_data_source, ensure_virtual_table
from tests.fixtures.dataverse import running_dataverse
from tests.fixtures.odata_provider import ODataProvider, serve
from tests.integration.dataverse.test_virtual_tables import person_table


def test_a_virtual_table_survives_a_restart_of_the_simulator(tmp_path: Path) -> None:
    db = str(tmp_path / "dataverse.sqlite")
    with serve(ODataProvider()) as provider:
        provider.seed(4)
        source = DataSource("people", provider.url, [(provider.key_name, provider.key_value, True)])
        with running_dataverse("--db", db) as sim, sim.client() as api:
            entity_set = ensure_virtual_table(api, person_table("new_Person"), ensure_data_source(api, source))
            assert len(api.get(entity_set).json()["value"]) == 4
        with running_dataverse("--db", db) as sim, sim.client() as api:
            answer = api.get(entity_set, params={"$select": "new_fullname", "$filter": "new_age gt 21"})
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["value"]) == 3
            assert ensure_virtual_table(api, person_table("new_Person"), ensure_data_source(api, source)) == entity_set
            filters = api.get(
                "sdkmessagefilters", params={"$filter": "primaryobjecttypecode eq 'new_person'", "$select": "name"}
            ).json()["value"]
            assert sorted(f["name"] for f in filters) == [
                "OnExternalCreated of new_person",
                "OnExternalDeleted of new_person",
                "OnExternalUpdated of new_person",
            ]
