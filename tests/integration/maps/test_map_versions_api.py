"""The map versions routes (functions/mapversions.py) through the local host, over an Azurite of this module's own:
every refusal a problem naming what is wrong, nothing stored by a refused change, decimals exact both ways."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.connectors import jsonwire
from tests.fixtures.devhost import RunningHost

pytestmark = pytest.mark.integration
MAPS = Path(__file__).parents[3] / "maps"
MONEY = Decimal("12345678901234567.0123456789")  # more digits than a float keeps


@pytest.fixture(scope="module")
def api(devhost: Callable[..., RunningHost], own_azurite: str) -> Iterator[httpx.Client]:
    host = devhost("tests.integration.maps.mapversions_app:app", TABLE_STORAGE_CONNECTION=own_azurite,
                   MAPS_PATH=str(MAPS), DEPLOY_ON_START="false")
    with httpx.Client(base_url=host.url + "/api/manage/v1/maps", timeout=60,
                      headers={"x-functions-key": host.master_key}) as client:
        yield client


def vendors(**changes: Any) -> bytes:
    definition = jsonwire.loads((MAPS / "vendors.json").read_text())
    return jsonwire.dumps({**definition, **changes})


def with_credit_limit() -> bytes:
    definition = jsonwire.loads(vendors(version="1.1.0"))
    definition["fields"].append({"fno": "CreditLimit", "dataverse": "msdyn_creditlimit", "direction": "to_dataverse",
                                 "type": "decimal", "transform": [{"type": "default", "value": MONEY}]})
    return jsonwire.dumps(definition)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


def test_the_running_maps_are_the_files_until_a_revision_is_stored(api: httpx.Client) -> None:
    listing = api.get("").json()
    by_name = {m["name"]: m for m in listing["maps"]}
    assert by_name["vendors"]["revision"] is None and by_name["vendors"]["origin"].endswith("vendors.json")
    assert listing["maps_problem"] is None and listing["loaded_at"]
    shown = api.get("/vendors")
    assert shown.status_code == 200 and shown.headers["etag"] == '"0"'
    assert shown.json()["definition"] == json.loads((MAPS / "vendors.json").read_text())
    assert problem(api.get("/nope"), 404)["map"] == "nope"
    assert problem(api.get("/nope/versions"), 404)["title"] == "Map not found"
    assert api.get("/vendors/versions").json()["versions"] == []


def test_a_refused_change_names_what_is_wrong_and_stores_nothing(api: httpx.Client) -> None:
    wrong_name = problem(api.put("/vendors", content=vendors(name="customers")), 400)
    assert wrong_name["invalid_params"][0]["name"] == "name"
    assert problem(api.put("/vendors", content=b"{oops"), 400)["invalid_params"][0]["name"] == "body"
    invalid = problem(api.put("/vendors", content=vendors(conflict="whoever_shouts_loudest")), 422)
    assert [(p["map"], p["field"], p["origin"]) for p in invalid["problems"]] == [
        ("vendors", "conflict", "stored revision 1")]
    assert "whoever_shouts_loudest" in invalid["problems"][0]["message"]
    too_large = problem(api.put("/vendors", content=vendors(description="x" * 460_000)), 413)
    assert too_large["field"] == "body"
    assert problem(api.put("/vendors", content=vendors(), headers={"if-match": "three"}), 400)[
        "invalid_params"][0]["name"] == "If-Match"
    assert problem(api.get("/vendors/versions/zero"), 400)["invalid_params"][0]["name"] == "revision"
    assert problem(api.get("/vendors/versions/1"), 404)["title"] == "Revision not found"
    assert api.get("/vendors/versions").json()["versions"] == []


def test_a_draft_is_validated_without_being_stored(api: httpx.Client) -> None:
    good = api.post("/vendors/validate", content=with_credit_limit())
    assert good.status_code == 200, good.text
    assert good.json()["valid"] is True
    assert [p for p in good.json()["problems"] if p["severity"] == "error"] == []
    draft = jsonwire.loads(vendors())
    draft["fields"][1]["fno"] = "VendorOrganisationName"  # a typo in a field an editor would show next to it
    draft["conflict"] = "whoever_shouts_loudest"
    bad = api.post("/vendors/validate", content=jsonwire.dumps(draft))
    assert bad.status_code == 200 and bad.json()["valid"] is False
    fields = {p["field"] for p in bad.json()["problems"] if p["map"] == "vendors"}
    assert "conflict" in fields
    assert problem(api.post("/vendors/validate", content=b"{oops"), 400)["invalid_params"][0]["name"] == "body"
    assert problem(api.post("/vendors/validate", content=vendors(name="x")), 400)["invalid_params"][0]["name"] == "name"
    assert api.get("/vendors/versions").json()["versions"] == []  # nothing stored
    assert api.get("/vendors").headers["etag"] == '"0"'


def test_a_sample_record_is_previewed_through_the_running_map_or_a_draft(api: httpx.Client) -> None:
    record = {"dataAreaId": "usmf", "VendorAccountNumber": "V-1", "VendorOrganizationName": "Litware",
              "VendorGroupId": "10"}
    shown = api.post("/vendors/preview", content=jsonwire.dumps({"direction": "to_dataverse", "record": record}))
    assert shown.status_code == 200, shown.text
    values = shown.json()["values"]
    assert values["msdyn_vendorname"] == "Litware" and values["msdyn_vendoraccountnumber"] == "V-1"
    assert values["msdyn_company"] == {"map": "legal-entities", "side": "dataverse",
                                       "key": {"cdm_companycode": "USMF"}}
    # A draft with a new column: previewed exactly (decimals kept), nothing stored.
    draft = jsonwire.loads(with_credit_limit())
    answer = api.post("/vendors/preview", content=jsonwire.dumps({
        "direction": "to_dataverse", "record": {**record, "CreditLimit": None}, "definition": draft}))
    assert answer.status_code == 200, answer.text
    assert jsonwire.loads(answer.content)["values"]["msdyn_creditlimit"] == MONEY
    assert problem(api.post("/vendors/preview", content=b'{"direction": "sideways", "record": {}}'), 400)[
        "invalid_params"][0]["name"] == "direction"
    assert problem(api.post("/nope/preview", content=b'{"direction": "to_fno", "record": {}}'), 404)["map"] == "nope"
    assert api.get("/vendors/versions").json()["versions"] == []


def test_a_stored_revision_runs_keeps_its_decimals_and_is_guarded_by_if_match(api: httpx.Client) -> None:
    stored = api.put("/vendors", content=with_credit_limit(), params={"reason": "credit limits"},
                     headers={"if-match": '"0"', "x-dualwrite-user": "ana"})
    assert stored.status_code == 201, stored.text
    answer = stored.json()
    assert (answer["map"], answer["revision"], answer["version"], answer["by"], answer["reason"]) == (
        "vendors", 1, "1.1.0", "ana", "credit limits")
    assert answer["takes_effect_within_seconds"] == 30 and answer["maps_problem"] is None
    assert stored.headers["etag"] == '"1"' and stored.headers["location"].endswith("/vendors/versions/1")

    shown = api.get("/vendors")  # this instance runs it at once
    running = jsonwire.loads(shown.content)
    assert (running["revision"], running["origin"], running["version"]) == (1, "stored revision 1", "1.1.0")
    assert running["definition"]["fields"][-1]["transform"][0]["value"] == MONEY
    one = jsonwire.loads(api.get("/vendors/versions/1").content)
    assert one["body"] == jsonwire.loads(with_credit_limit()) and one["by"] == "ana"

    stale = problem(api.put("/vendors", content=vendors(version="1.2.0"), headers={"if-match": '"0"'}), 409)
    assert stale["latest_revision"] == 1
    second = api.put("/vendors", content=vendors(version="1.2.0"), headers={
        "if-match": '"1"', "x-dualwrite-reason": "back to the file's columns"})
    assert second.status_code == 201 and second.json()["revision"] == 2
    versions = api.get("/vendors/versions").json()
    assert [(v["revision"], v["version"], v["reason"]) for v in versions["versions"]] == [
        (2, "1.2.0", "back to the file's columns"), (1, "1.1.0", "credit limits")]
    assert "body" not in versions["versions"][0] and versions["running_revision"] == 2

    restored = api.post("/vendors/versions/1/restore")
    assert restored.status_code == 201 and restored.json()["revision"] == 3
    assert restored.json()["reason"] == "restore of revision 1"
    again = jsonwire.loads(api.get("/vendors").content)
    assert again["revision"] == 3 and again["definition"]["fields"][-1]["transform"][0]["value"] == MONEY
    assert problem(api.post("/vendors/versions/9/restore"), 404)["revision"] == 9
    listing = {m["name"]: m for m in api.get("").json()["maps"]}
    assert (listing["vendors"]["revision"], listing["vendors"]["origin"]) == (3, "stored revision 3")
