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
from core.maps import MapSet, TableMap
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


def test_initial_sync_of_a_scenario_names_its_disabled_maps(
    seams: Seams, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["sync", "initial", "--scenario", "organisation", "--no-wait"], obj=seams)
    err = " ".join(capsys.readouterr().err.split())
    assert "operating-units, sites, warehouses are disabled" in err
    assert "dualwrite maps enable-scenario organisation" in err
    main(["sync", "initial", "--scenario", "companies", "--no-wait"], obj=seams)
    assert "disabled" not in capsys.readouterr().err


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


class EnablingEngine(FakeEngine):
    """The scenarios route, GET /maps/{map} with the shipped definition and PUT /maps/{map} checked by the real map
    model; `refuse` names a map whose PUT answers 422 with a problem."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[tuple[str, dict[str, Any], str | None]] = []
        self.refuse: str | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(PREFIX)
        if path.startswith("/maps/"):
            self.requests.append(request)
            name = path.removeprefix("/maps/")
            if request.method == "GET":
                definition = json.loads((REPO / "maps" / f"{name}.json").read_text())
                return httpx.Response(200, json={"name": name, "definition": definition})
            if name == self.refuse:
                return httpx.Response(
                    422,
                    json={
                        "title": "Invalid map",
                        "status": 422,
                        "detail": "refused",
                        "problems": [{"map": name, "field": None, "severity": "error", "message": "made up"}],
                    },
                )
            body = json.loads(request.content)
            TableMap.model_validate(body)
            self.stored.append((name, body, request.url.params.get("reason")))
            return httpx.Response(
                201,
                json={
                    "map": name,
                    "revision": len(self.stored),
                    "version": body["version"],
                    "takes_effect_within_seconds": 30,
                },
            )
        return super().handler(request)


def test_enable_scenario_stores_each_disabled_map_enabled_in_dependency_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = EnablingEngine()
    seams = Seams(transport=httpx.MockTransport(engine.handler), sleep=lambda _: None)
    assert main(["maps", "enable-scenario", "organisation"], obj=seams) == 0
    organisation = next(s for s in engine.scenarios["scenarios"] if s["name"] == "organisation")
    assert organisation["disabled"]  # the maps ship disabled
    assert [name for name, _, _ in engine.stored] == organisation["disabled"]
    assert all(body["enabled"] is True for _, body, _ in engine.stored)
    assert {reason for _, _, reason in engine.stored} == {"enable scenario organisation"}
    shipped = json.loads((REPO / "maps" / "warehouses.json").read_text())
    assert dict(engine.stored[-1][1], enabled=False) == shipped  # nothing else changed
    assert "warehouses: stored as revision" in capsys.readouterr().out


def test_enable_scenario_stops_at_the_first_refusal() -> None:
    engine = EnablingEngine()
    organisation = next(s for s in engine.scenarios["scenarios"] if s["name"] == "organisation")
    engine.refuse = organisation["disabled"][1]
    seams = Seams(transport=httpx.MockTransport(engine.handler), sleep=lambda _: None)
    assert main(["maps", "enable-scenario", "organisation"], obj=seams) == 1
    assert [name for name, _, _ in engine.stored] == organisation["disabled"][:1]


def test_enable_scenario_of_an_unknown_scenario_is_a_usage_error() -> None:
    engine = EnablingEngine()
    seams = Seams(transport=httpx.MockTransport(engine.handler), sleep=lambda _: None)
    assert main(["maps", "enable-scenario", "nope"], obj=seams) == 2
    assert engine.stored == []
