"""Units (`uom`) in unit groups (`uomschedule`) over the Web API: Dataverse requires every unit's group; dual-write's
plugin places a unit created with its F&O unit class (msdyn_externalunitclassname) in that class's group, made on
first use with its base unit (devstack.dataverse.unitgroups)."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(dataverse) -> httpx.Client:
    with dataverse.client() as client:
        yield client


def _unit(api: httpx.Client, symbol: str, unit_class: str) -> dict:
    response = api.patch(f"uoms(msdyn_symbol='{symbol}')", json={
        "name": symbol, "msdyn_symbol": symbol, "msdyn_externalunitclassname": unit_class},
        headers={"Prefer": "return=representation"})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_unit_without_its_group_or_class_is_refused_naming_the_column(api):
    response = api.post("uoms", json={"name": "orphan", "msdyn_symbol": "orph"})
    assert response.status_code == 400
    assert "'uomscheduleid' of the 'uom' entity must be provided" in response.json()["error"]["message"]


def test_units_of_one_class_share_its_group_and_its_base_unit(api):
    unit_class = f"Class{uuid.uuid4().hex[:8]}"
    first, second = _unit(api, f"a{unit_class[-6:]}", unit_class), _unit(api, f"b{unit_class[-6:]}", unit_class)
    group_id = first["_uomscheduleid_value"]
    assert second["_uomscheduleid_value"] == group_id
    assert (first["quantity"], first["isschedulebaseuom"]) == (1, False)
    group = api.get(f"uomschedules({group_id})").json()
    assert (group["name"], group["baseuomname"]) == (unit_class, f"{unit_class} base unit")
    base = api.get(f"uoms({first['_baseuom_value']})").json()
    assert (base["name"], base["isschedulebaseuom"], base["_uomscheduleid_value"]) == (
        f"{unit_class} base unit", True, group_id)
    assert second["_baseuom_value"] == base["uomid"]


def test_a_unit_of_another_class_gets_another_group(api):
    mass, length = _unit(api, "kgx", "MassX"), _unit(api, "mx", "LengthX")
    assert mass["_uomscheduleid_value"] != length["_uomscheduleid_value"]


def test_a_unit_naming_its_group_keeps_it(api):
    group_id = _unit(api, "grp1", "Grouped")["_uomscheduleid_value"]
    response = api.post("uoms", json={
        "name": "grp2", "msdyn_symbol": "grp2", "uomscheduleid@odata.bind": f"/uomschedules({group_id})",
        "baseuom@odata.bind": f"/uoms({_unit(api, 'grp3', 'Grouped')['_baseuom_value']})", "quantity": 10},
        headers={"Prefer": "return=representation"})
    assert response.status_code == 201, response.text
    assert (response.json()["_uomscheduleid_value"], response.json()["quantity"]) == (group_id, 10)
