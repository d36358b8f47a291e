"""`dualwrite maps check|preview` against a fake management API (httpx.MockTransport) serving the validate and
preview routes of functions/mapversions.py (tests/integration/maps/test_map_versions_api.py holds them to it)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from core.cli.api import Seams
from core.cli.main import main
from core.connectors import jsonwire

DRAFT = b'{"name": "vendors", "version": "1.2.0", "conflict": "whoever"}'


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/validate"):
            valid = b"whoever" not in request.content
            problems = [] if valid else [{"map": "vendors", "field": "conflict", "severity": "error",
                                          "message": "conflict: Input should be 'primary_wins' or 'latest_wins'",
                                          "origin": "stored revision 3"}]
            return httpx.Response(200, json={"map": "vendors", "valid": valid, "problems": problems})
        if request.url.path.endswith("/preview"):
            asked = jsonwire.loads(request.content)
            return httpx.Response(200, content=jsonwire.dumps({"map": "vendors", "direction": asked["direction"],
                                                               "values": {"echo": asked}}))
        return httpx.Response(404)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def seams(engine: FakeEngine) -> Seams:
    return Seams(transport=httpx.MockTransport(engine.handler))


def test_check_lists_each_problem_and_exits_1_when_the_draft_would_be_refused(seams, engine, capsys, tmp_path):
    draft = tmp_path / "vendors.json"
    draft.write_bytes(DRAFT)
    assert main(["maps", "check", str(draft)], obj=seams) == 1
    [request] = engine.requests
    assert (request.method, request.url.path, request.content) == ("POST", "/api/manage/v1/maps/vendors/validate",
                                                                    DRAFT)
    out = capsys.readouterr().out
    assert "vendors: would be refused (1 problem(s))" in out and "primary_wins" in out
    draft.write_bytes(DRAFT.replace(b'"whoever"', b'"latest_wins"'))
    assert main(["maps", "check", str(draft), "--json"], obj=seams) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_preview_sends_the_sample_record_exactly_and_prints_the_values(seams, engine, capsys, tmp_path):
    record = tmp_path / "record.json"
    record.write_text('{"CreditLimit": 12345678901234567.0123456789, "Name": "Litware"}')
    draft = tmp_path / "draft.json"
    draft.write_bytes(DRAFT)
    assert main(["maps", "preview", "vendors", str(record), "--to", "dataverse", "--draft", str(draft)],
                obj=seams) == 0
    sent = jsonwire.loads(engine.requests[0].content)
    assert sent["direction"] == "to_dataverse" and sent["definition"]["conflict"] == "whoever"
    assert sent["record"]["CreditLimit"] == Decimal("12345678901234567.0123456789")
    shown = jsonwire.loads(capsys.readouterr().out)
    assert shown["echo"]["record"]["CreditLimit"] == Decimal("12345678901234567.0123456789")


def test_preview_refuses_an_unknown_side_before_calling(seams, engine, tmp_path):
    record = tmp_path / "record.json"
    record.write_text("{}")
    assert main(["maps", "preview", "vendors", str(record), "--to", "sideways"], obj=seams) == 2
    assert engine.requests == []
