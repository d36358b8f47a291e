"""`$batch` over HTTP: multipart/mixed, reads outside changesets, atomic changesets, Content-ID refs."""

from __future__ import annotations

import json
import re

import httpx
import pytest

pytestmark = pytest.mark.integration


def request_part(method: str, url: str, body: dict[str, object] | None = None, content_id: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    http = f"{method} {url} HTTP/1.1\r\nAccept: application/json\r\n"
    if body is not None:
        http += "Content-Type: application/json\r\n\r\n" + json.dumps(body)
    else:
        http += "\r\n"
    return head + "\r\n" + http


def batch_body(items: list[str | list[str]]) -> tuple[str, bytes]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append("--batch_b1\r\n" + item + "\r\n")
        else:
            cs = f"changeset_c{i}"
            inner = "".join(f"--{cs}\r\n{p}\r\n" for p in item) + f"--{cs}--\r\n"
            out.append(f"--batch_b1\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n{inner}")
    return "multipart/mixed; boundary=batch_b1", ("".join(out) + "--batch_b1--\r\n").encode()


def responses(resp: httpx.Response) -> list[tuple[int, str]]:
    """(status, body) of every HTTP response inside the batch answer, in order."""
    found = re.findall(r"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n-]*)", resp.text)
    return [(int(code), body) for code, body in found]


def group(account: str, description: str = "batch") -> dict[str, object]:
    return {"VendorGroupId": account, "Description": description}


def test_batch_with_reads_and_an_atomic_changeset(odata: httpx.Client) -> None:
    ctype, body = batch_body([
        request_part("GET", "Currencies('USD')"),
        [request_part("POST", "VendorGroups", group("B-1"), "1"),
         request_part("POST", "VendorGroups", group("B-2"), "2"),
         request_part("PATCH", "$1", {"Description": "patched via $1"}, "3")],
    ])
    resp = odata.post("$batch", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("multipart/mixed; boundary=batchresponse_")
    codes = [code for code, _ in responses(resp)]
    assert codes == [200, 201, 201, 204]
    assert '"CurrencyCode":"USD"' in resp.text
    row = odata.get("VendorGroups(dataAreaId='usmf',VendorGroupId='B-1')").json()
    assert row["Description"] == "patched via $1"


def test_failed_changeset_rolls_back_everything_in_it(odata: httpx.Client) -> None:
    ctype, body = batch_body([
        [request_part("POST", "VendorGroups", group("B-ROLL-1"), "1"),
         request_part("POST", "VendorGroups", {"Description": "no key"}, "2")],
        [request_part("POST", "VendorGroups", group("B-KEEP-1"), "1")],
    ])
    resp = odata.post("$batch", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 200
    codes = [code for code, _ in responses(resp)]
    assert codes == [400, 201]  # the failed changeset answers with its one error response
    assert "must be filled in" in resp.text
    assert odata.get("VendorGroups(dataAreaId='usmf',VendorGroupId='B-ROLL-1')").status_code == 404
    assert odata.get("VendorGroups(dataAreaId='usmf',VendorGroupId='B-KEEP-1')").status_code == 200


def test_absolute_urls_and_cross_company_inside_batch(odata: httpx.Client) -> None:
    base = str(odata.base_url)
    ctype, body = batch_body([
        [request_part("POST", base + "VendorGroups", {**group("B-DE-1"), "dataAreaId": "demf"}, "1")],
        request_part("GET", base + "VendorGroups(dataAreaId='demf',VendorGroupId='B-DE-1')?cross-company=true"),
    ])
    resp = odata.post("$batch", content=body, headers={"Content-Type": ctype})
    assert [code for code, _ in responses(resp)] == [201, 200]
    assert '"dataAreaId":"demf"' in resp.text


def test_batch_errors(odata: httpx.Client) -> None:
    not_multipart = odata.post("$batch", content=b"{}", headers={"Content-Type": "application/json"})
    assert not_multipart.status_code == 400
    assert "multipart/mixed" in not_multipart.json()["error"]["message"]
    assert odata.get("$batch").status_code == 405
