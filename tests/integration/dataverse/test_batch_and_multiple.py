"""`$batch` (reference §2.5) and the CreateMultiple / UpsertMultiple bound actions over HTTP."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from devstack.dataverse.seed import seed_id

pytestmark = pytest.mark.integration
USMF = seed_id("cdm_company", "usmf")
API = "/api/data/v9.2/"


@pytest.fixture(scope="module")
def api(dataverse) -> httpx.Client:
    with dataverse.client() as client:
        yield client


def part(method: str, url: str, body: str | None = None, content_id: str | None = None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1", "Content-Type: application/json; type=entry", "", body or ""]
    return "\r\n".join(lines)


def batch(api: httpx.Client, items: list[str | list[str]], prefer: str | None = None) -> httpx.Response:
    """items: a part, or a list of parts forming one changeset."""
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = []
    for item in items:
        if isinstance(item, list):
            cs = f"changeset_{uuid.uuid4().hex}"
            inner = "".join(f"--{cs}\r\n{p}\r\n" for p in item) + f"--{cs}--"
            chunks.append(f"Content-Type: multipart/mixed; boundary=\"{cs}\"\r\n\r\n{inner}")
        else:
            chunks.append(item)
    body = "".join(f"--{boundary}\r\n{c}\r\n" for c in chunks) + f"--{boundary}--\r\n"
    headers = {"Content-Type": f'multipart/mixed; boundary="{boundary}"'}
    if prefer:
        headers["Prefer"] = prefer
    return api.post("$batch", content=body.encode(), headers=headers)


def statuses(response: httpx.Response) -> list[int]:
    return [int(s) for s in re.findall(r"HTTP/1.1 (\d{3})", response.text)]


def test_batch_runs_parts_in_order_with_an_atomic_changeset_and_content_id_references(api):
    number = "B-" + uuid.uuid4().hex[:8]
    r = batch(api, [
        part("PATCH", f"{API}accounts(accountnumber='{number}',_msdyn_company_value={USMF})",
             '{"name":"Batch upsert"}'),
        [
            part("POST", f"{API}accounts", f'{{"name":"Fabrikam","accountnumber":"{number}-2"}}', "1"),
            part("POST", f"{API}contacts", '{"lastname":"Reyes","parentcustomerid_account@odata.bind":"$1"}', "2"),
            part("PATCH", "$1", '{"telephone1":"555"}', "3"),
        ],
        part("GET", f"{API}accounts?$select=name&$filter=accountnumber%20eq%20'{number}-2'"),
    ])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert statuses(r) == [204, 204, 204, 204, 200]
    assert "boundary=changesetresponse_" in r.text and "Content-ID: 2" in r.text
    created = api.get("accounts", params={"$filter": f"accountnumber eq '{number}-2'"}).json()["value"][0]
    assert created["telephone1"] == "555"
    child = api.get("contacts", params={"$filter": f"_parentcustomerid_value eq {created['accountid']}"})
    assert [c["lastname"] for c in child.json()["value"]] == ["Reyes"]


def test_a_failing_changeset_rolls_back_and_stops_the_batch(api):
    number = "R-" + uuid.uuid4().hex[:8]
    r = batch(api, [
        [
            part("POST", f"{API}accounts", f'{{"name":"Rolled back","accountnumber":"{number}"}}', "1"),
            part("POST", f"{API}accounts", '{"name":"' + "x" * 200 + '"}', "2"),
        ],
        part("POST", f"{API}accounts", f'{{"name":"Never","accountnumber":"{number}-never"}}'),
    ])
    assert r.status_code == 400
    assert statuses(r) == [400]
    assert "0x80044331" in r.text and "'name'" in r.text
    found = api.get("accounts", params={"$filter": f"startswith(accountnumber,'{number}')"}).json()["value"]
    assert found == []


def test_continue_on_error_runs_every_part(api):
    number = "C-" + uuid.uuid4().hex[:8]
    r = batch(api, [
        part("POST", f"{API}accounts", '{"name":"' + "x" * 200 + '"}'),
        part("GET", f"{API}accounts({uuid.uuid4()})"),
        part("POST", f"{API}accounts", f'{{"name":"Still made","accountnumber":"{number}"}}'),
    ], prefer="odata.continue-on-error")
    assert r.status_code == 200
    assert statuses(r) == [400, 404, 204]
    assert api.get("accounts", params={"$filter": f"accountnumber eq '{number}'"}).json()["value"]


def test_batch_limits_and_malformed_bodies(api):
    too_many = batch(api, [part("GET", f"{API}WhoAmI")] * 1001)
    assert too_many.status_code == 400 and "1000" in too_many.json()["error"]["message"]
    get_in_changeset = batch(api, [[part("GET", f"{API}accounts")]])
    assert get_in_changeset.status_code == 400
    no_boundary = api.post("$batch", content=b"x", headers={"Content-Type": "multipart/mixed"})
    assert no_boundary.status_code == 400


def test_create_multiple_returns_ids(api):
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.product", "name": f"P{i}", "productnumber": f"CM-{uuid.uuid4()}"}
               for i in range(5)]
    r = api.post("products/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets})
    assert r.status_code == 200, r.text
    ids = r.json()["Ids"]
    assert len(ids) == 5 and api.get(f"products({ids[0]})").json()["name"] == "P0"


def test_upsert_multiple_by_alternate_key_is_all_or_nothing(api):
    prefix = "UM-" + uuid.uuid4().hex[:6]
    targets = [{"@odata.type": "Microsoft.Dynamics.CRM.product", "name": f"Up {i}",
                "@odata.id": f"products(productnumber='{prefix}-{i}')"} for i in range(3)]
    first = api.post("products/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    assert first.status_code == 200, first.text
    ids = first.json()["Ids"]
    targets[0]["name"] = "Up zero again"
    targets.append({"@odata.type": "Microsoft.Dynamics.CRM.product", "name": "By key in body",
                    "productnumber": f"{prefix}-body"})
    second = api.post("products/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    assert second.json()["Ids"][:3] == ids
    assert api.get(f"products({ids[0]})").json()["name"] == "Up zero again"
    bad = [{"name": "ok", "productnumber": f"{prefix}-ok"}, {"name": "x" * 101, "productnumber": f"{prefix}-bad"}]
    failed = api.post("products/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": bad})
    assert failed.status_code == 400 and failed.json()["error"]["message"].startswith("Targets[1]:")
    assert api.get(f"products(productnumber='{prefix}-ok')").status_code == 404
