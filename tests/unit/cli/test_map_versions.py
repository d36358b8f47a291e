"""`dualwrite maps show|put|versions|restore` against a fake management API (httpx.MockTransport) serving the
contract of functions/mapversions.py (tests/integration/maps/test_map_versions_api.py holds the routes to it)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from core.cli.api import Seams
from core.cli.main import main
from core.connectors import jsonwire

PREFIX = "/api/manage/v1/maps"
MAPS = Path(__file__).parents[3] / "maps"
# A map file as people write it: a decimal with more digits than a float keeps, and their own layout.
MAP_TEXT = (b'{\n  "name": "vendors",\n  "version": "1.1.0",\n  "credit": 12345678901234567.0123456789,\n'
            b'  "title": "Vendors, d\xc3\xa9j\xc3\xa0"\n}\n')


def problem(status: int, title: str, detail: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/problem+json"},
                          json={"type": "about:blank", "title": title, "status": status, "detail": detail, **extra})


class FakeEngine:
    """The map routes: a running vendors map (stored revision 2), its revisions, every request recorded."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.refuse_with: httpx.Response | None = None  # the answer to the next PUT or restore, if not a 201
        self.definition = jsonwire.loads(MAP_TEXT)
        self.revisions = [
            {"map": "vendors", "revision": 2, "version": "1.1.0", "by": "bob", "at": "2024-05-02T10:00:00Z",
             "reason": "credit limits"},
            {"map": "vendors", "revision": 1, "version": "1.0.1", "by": "ana", "at": "2024-05-01T09:00:00Z",
             "reason": ""}]
        self.running: tuple[int | None, str] = (2, "stored revision 2")  # the revision that runs, and its origin

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = [unquote(p) for p in request.url.raw_path.decode().partition("?")[0].removeprefix(PREFIX)
                 .strip("/").split("/")]
        if parts[0] != "vendors":
            return problem(404, "Map not found", f"no running map named {parts[0]!r} and no stored revision of it")
        if request.method == "GET" and len(parts) == 1:
            return httpx.Response(200, content=jsonwire.dumps({
                "name": "vendors", "title": "Vendors", "version": "1.1.0", "revision": 2, "origin": "stored revision 2",
                "enabled": True, "latest_revision": 2, "loaded_at": "2024-05-02T10:00:01Z",
                "definition": self.definition}), headers={"content-type": "application/json"})
        if request.method == "GET" and parts[1:] == ["versions"]:
            return httpx.Response(200, json={"map": "vendors", "running_revision": self.running[0],
                                             "origin": self.running[1], "versions": self.revisions})
        if request.method in ("PUT", "POST"):
            if self.refuse_with is not None:
                return self.refuse_with
            return httpx.Response(201, json={
                "map": "vendors", "revision": 3, "version": "1.1.0", "by": "api", "at": "2024-05-03T10:00:00Z",
                "reason": request.url.params.get("reason", ""), "takes_effect_within_seconds": 30,
                "maps_problem": None})
        return problem(404, "Not Found", f"no route {request.url.path}")

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix(PREFIX)}" for r in self.requests]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def seams(engine: FakeEngine) -> Seams:
    return Seams(transport=httpx.MockTransport(engine.handler))


def run_cli(seams: Seams, *argv: str) -> int:
    return main(["maps", *argv], obj=seams)


def test_show_prints_the_running_definition_exactly_and_where_it_comes_from_apart(seams, engine, capsys):
    assert run_cli(seams, "show", "vendors") == 0
    assert engine.calls() == ["GET /vendors"]
    out, err = capsys.readouterr()
    assert jsonwire.loads(out) == jsonwire.loads(MAP_TEXT)  # ready for `maps put`: the decimal keeps every digit
    assert "12345678901234567.0123456789" in out and "déjà" in out
    assert "vendors: version 1.1.0, stored revision 2, loaded 2024-05-02 10:00:01" in err


def test_show_json_prints_the_whole_answer(seams, capsys):
    assert run_cli(seams, "show", "vendors", "--json") == 0
    answer = jsonwire.loads(capsys.readouterr().out)
    assert answer["origin"] == "stored revision 2"
    assert answer["definition"]["credit"] == Decimal("12345678901234567.0123456789")


def test_show_of_an_unknown_map_says_so_and_exits_1(seams, capsys):
    assert run_cli(seams, "show", "nope") == 1
    assert "Map not found: no running map named 'nope'" in capsys.readouterr().err


def test_put_sends_the_file_as_it_is_to_the_map_it_names(seams, engine, capsys, tmp_path):
    path = tmp_path / "vendors-edited.json"
    path.write_bytes(MAP_TEXT)
    assert run_cli(seams, "put", str(path), "--reason", "crédit limits") == 0
    [request] = engine.requests
    assert (request.method, request.url.path) == ("PUT", f"{PREFIX}/vendors")
    assert request.content == MAP_TEXT and request.headers["content-type"] == "application/json"
    assert request.url.params["reason"] == "crédit limits"
    assert "vendors: stored as revision 3 (version 1.1.0); it runs on every instance within 30 s" in \
        capsys.readouterr().out


def test_a_refused_put_lists_each_problem_and_exits_1(seams, engine, capsys, tmp_path):
    path = tmp_path / "vendors.json"
    path.write_bytes(MAP_TEXT)
    problems = [{"map": "vendors", "field": "conflict", "message": "conflict: Input should be 'primary_wins' or "
                 "'latest_wins', got 'whoever'", "origin": "stored revision 3"},
                {"map": "contacts", "field": "parentcustomerid_account", "message": "lookup references map "
                 "'customers', which does not exist", "origin": "maps/contacts.json"}]
    engine.refuse_with = problem(422, "Invalid map", "the maps with this change would not pass validation "
                                 "(2 problem(s)); nothing was stored", map="vendors", problems=problems)
    assert run_cli(seams, "put", str(path)) == 1
    err = capsys.readouterr().err
    assert "Invalid map: the maps with this change would not pass validation" in err
    assert err.splitlines()[1].split() == ["map", "field", "problem", "in"]
    conflict = next(line for line in err.splitlines() if line.startswith("vendors"))
    assert "conflict" in conflict and "got 'whoever'" in conflict and "stored revision 3" in conflict
    assert any(line.startswith("contacts") and "maps/contacts.json" in line for line in err.splitlines())

    assert run_cli(seams, "put", str(path), "--json") == 1
    assert json.loads(capsys.readouterr().out)["problems"] == problems


def test_a_stale_put_says_why(seams, engine, capsys, tmp_path):
    path = tmp_path / "vendors.json"
    path.write_bytes(MAP_TEXT)
    engine.refuse_with = problem(409, "Revision changed", "revision 3 of map 'vendors' was stored by someone else "
                                 "meanwhile", latest_revision=3)
    assert run_cli(seams, "put", str(path)) == 1
    assert "Revision changed: revision 3 of map 'vendors' was stored by someone else" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"{oops", b"[1, 2]", b'{"title": "no name"}'])
def test_put_of_a_file_that_is_not_a_map_is_a_usage_error(seams, engine, capsys, tmp_path, content):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    assert run_cli(seams, "put", str(path)) == 2
    assert engine.requests == [] and "broken.json" in capsys.readouterr().err


def test_put_of_a_missing_file_is_a_usage_error(seams, engine, tmp_path):
    assert run_cli(seams, "put", str(tmp_path / "nowhere.json")) == 2
    assert engine.requests == []


def test_versions_lists_the_revisions_newest_first_and_marks_the_running_one(seams, engine, capsys):
    assert run_cli(seams, "versions", "vendors") == 0
    assert engine.calls() == ["GET /vendors/versions"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "vendors runs stored revision 2"
    assert lines[1].split() == ["revision", "version", "at", "by", "reason"]
    assert lines[2].split() == ["2", "1.1.0", "2024-05-02", "10:00:00", "bob", "credit", "limits", "running"]
    assert lines[3].split() == ["1", "1.0.1", "2024-05-01", "09:00:00", "ana"]


def test_versions_of_a_map_that_runs_its_file(seams, engine, capsys):
    engine.revisions, engine.running = [], (None, "maps/vendors.json")
    assert run_cli(seams, "versions", "vendors") == 0
    assert capsys.readouterr().out.splitlines() == ["vendors runs its file maps/vendors.json", "no stored revisions"]


def test_restore_stores_the_revision_again(seams, engine, capsys):
    assert run_cli(seams, "restore", "vendors", "1", "--reason", "undo") == 0
    [request] = engine.requests
    assert (request.method, request.url.path) == ("POST", f"{PREFIX}/vendors/versions/1/restore")
    assert request.url.params["reason"] == "undo"
    assert "vendors: stored as revision 3" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["restore", "vendors"], ["restore", "vendors", "0"], ["restore", "vendors", "x"],
                                  ["show"], ["versions"], ["put"]])
def test_usage_errors_exit_2_and_call_nothing(seams, engine, argv):
    assert run_cli(seams, *argv) == 2
    assert engine.requests == []


def test_the_group_lists_the_revision_commands(seams, capsys):
    assert run_cli(seams, "--help") == 0
    out = capsys.readouterr().out
    for command in ("show", "put", "versions", "restore"):
        assert command in out
