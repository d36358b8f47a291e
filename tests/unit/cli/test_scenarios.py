"""`dualwrite maps scenarios` and `dualwrite sync initial --scenario` against a fake management API whose scenario
answer is the engine's own (core.maps.scenarios over the shipped maps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cli.api import Seams
from core.cli.main import main
from core.maps import MapSet
from core.maps.scenarios import Scenarios, scenarios_file

REPO = Path(__file__).resolve().parents[3]
PREFIX = "/api/manage/v1"


class FakeEngine:
    def __init__(self) -> None:
        maps = MapSet.load([REPO / "maps"])
        self.scenarios: dict[str, Any] = {
            "scenarios": Scenarios.load(scenarios_file(REPO / "maps"), maps).view(),
            "problem": None,
        }
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(PREFIX)
        if request.method == "GET" and path == "/scenarios":
            return httpx.Response(200, json=self.scenarios)
        if request.method == "POST" and path == "/sync/runs":
            body = json.loads(request.content)
            return httpx.Response(
                202,
                json={"id": "r1", "kind": "initial", "status": "queued", "dry_run": False, "maps": [], "sample": []}
                | {"requested": body},
            )
        return httpx.Response(404, json={"title": "Not Found", "status": 404, "detail": path})

    def started(self) -> dict[str, Any]:
        return next(json.loads(r.content) for r in self.requests if r.method == "POST")


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def seams(engine: FakeEngine) -> Seams:
    return Seams(transport=httpx.MockTransport(engine.handler), sleep=lambda _: None)


def test_scenarios_lists_each_bundle_with_its_maps_in_order(
    seams: Seams,
    engine: FakeEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["maps", "scenarios"], obj=seams) == 0
    out = capsys.readouterr().out
    for item in engine.scenarios["scenarios"]:
        assert item["name"] in out
    flat = " ".join(out.split())
    for item in engine.scenarios["scenarios"]:  # each bundle's maps in the engine's order, the disabled ones starred
        disabled = set(item["disabled"])
        assert ", ".join(f"{m}*" if m in disabled else m for m in item["maps"]) in flat
    assert [r.url.path for r in engine.requests] == [f"{PREFIX}/scenarios"]


def test_scenarios_as_json_is_the_engine_answer(
    seams: Seams,
    engine: FakeEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["maps", "scenarios", "--json"], obj=seams) == 0
    assert json.loads(capsys.readouterr().out) == engine.scenarios


def test_a_problem_with_the_scenarios_file_exits_1_naming_it(
    seams: Seams, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.scenarios = {"scenarios": [], "problem": "scenario 'x': unknown map 'nope'"}
    assert main(["maps", "scenarios"], obj=seams) == 1
    assert "unknown map 'nope'" in capsys.readouterr().err


def test_initial_sync_of_a_scenario_sends_its_maps_in_dependency_order(seams: Seams, engine: FakeEngine) -> None:
    main(["sync", "initial", "--scenario", "customer-master", "--no-wait"], obj=seams)
    expected = next(s["maps"] for s in engine.scenarios["scenarios"] if s["name"] == "customer-master")
    assert engine.started()["maps"] == expected
    assert (
        expected.index("legal-entities")
        < expected.index("payment-terms")
        < expected.index("customer-groups")
        < expected.index("customers")
    )


def test_an_unknown_scenario_is_a_usage_error_and_starts_nothing(
    seams: Seams,
    engine: FakeEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sync", "initial", "--scenario", "nope"], obj=seams) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
    assert all(r.method == "GET" for r in engine.requests)


def test_scenario_and_all_are_exclusive(seams: Seams, engine: FakeEngine) -> None:
    assert main(["sync", "initial", "--scenario", "organisation", "--all"], obj=seams) == 2
    assert engine.requests == []
