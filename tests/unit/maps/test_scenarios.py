"""Scenario bundles: checked against the shipped maps; unknown names, cycles and order."""

import json
from pathlib import Path

import pytest

from core.maps import MapSet
from core.maps.scenarios import Scenario, ScenarioError, Scenarios, scenarios_file

REPO = Path(__file__).resolve().parents[3]


def _messages(exc: pytest.ExceptionInfo[ScenarioError]) -> list[str]:
    return [p.message for p in exc.value.problems]


def test_shipped_scenarios_load_and_every_scenario_runs_dependencies_first(shipped: MapSet) -> None:
    scenarios = Scenarios.load(scenarios_file(REPO / "maps"), shipped)
    assert {"organisation", "finance-reference-data", "customer-master", "product-master"} <= set(scenarios.by_name)
    for name in scenarios.by_name:
        order = scenarios.expand(name)
        assert len(order) == len(set(order))
        for position, map_name in enumerate(order):
            table_map = shipped[map_name]
            needed = {lk.map for lk in table_map.lookups if lk.required}
            if table_map.company is not None:
                needed.add(table_map.company.map)
            assert needed <= set(order[:position]), (name, map_name, order)


def test_a_scenario_includes_the_maps_of_the_scenarios_it_requires_first(shipped: MapSet) -> None:
    scenarios = Scenarios(
        [
            Scenario(name="org", title="Org", maps=["legal-entities"]),
            Scenario(name="groups", title="Groups", requires=["org"], maps=["customer-groups", "payment-terms"]),
        ],
        shipped,
    )
    assert scenarios.map_names("groups") == ["legal-entities", "customer-groups", "payment-terms"]
    # customer-groups looks up payment-terms: payment terms go first whatever order the file lists
    assert scenarios.expand("groups") == ["legal-entities", "payment-terms", "customer-groups"]


def test_unknown_map_and_unknown_required_scenario_are_named(shipped: MapSet) -> None:
    with pytest.raises(ScenarioError) as exc:
        Scenarios([Scenario(name="s", title="S", requires=["nope"], maps=["legal-entities", "no-such-map"])], shipped)
    assert _messages(exc) == [
        "scenario 's': unknown map 'no-such-map'",
        "scenario 's': requires unknown scenario 'nope'",
    ]


def test_scenarios_that_require_each_other_are_a_cycle(shipped: MapSet) -> None:
    with pytest.raises(ScenarioError) as exc:
        Scenarios(
            [
                Scenario(name="a", title="A", requires=["b"], maps=["legal-entities"]),
                Scenario(name="b", title="B", requires=["a"], maps=["currencies"]),
            ],
            shipped,
        )
    assert "scenario 'a': scenarios require each other: a -> b -> a" in _messages(exc)
    assert "scenario 'b': scenarios require each other: b -> a -> b" in _messages(exc)


def test_a_map_whose_dependency_is_outside_the_scenario_is_a_problem(shipped: MapSet) -> None:
    with pytest.raises(ScenarioError) as exc:
        Scenarios([Scenario(name="s", title="S", maps=["legal-entities", "customer-groups"])], shipped)
    assert _messages(exc) == [
        "scenario 's': map 'customer-groups' needs map 'payment-terms' (its lookup "
        "'msdyn_paymenttermid'), which is in neither the scenario nor a scenario it requires"
    ]


def test_duplicate_names_and_unknown_expand(shipped: MapSet) -> None:
    with pytest.raises(ScenarioError) as exc:
        Scenarios(
            [
                Scenario(name="s", title="S", maps=["legal-entities"]),
                Scenario(name="s", title="T", maps=["currencies"]),
            ],
            shipped,
        )
    assert "scenario 's': the scenario is defined twice" in _messages(exc)
    scenarios = Scenarios([Scenario(name="s", title="S", maps=["legal-entities"])], shipped)
    with pytest.raises(KeyError, match="unknown scenario 'x'"):
        scenarios.expand("x")


def test_a_broken_file_is_one_problem_naming_the_field(tmp_path: Path, shipped: MapSet) -> None:
    file = tmp_path / "scenarios.json"
    file.write_text(json.dumps({"scenarios": [{"name": "s", "title": "S", "maps": []}]}))
    with pytest.raises(ScenarioError) as exc:
        Scenarios.load(file, shipped)
    assert len(exc.value.problems) == 1
    assert "scenarios.0.maps" in exc.value.problems[0].message


def test_the_view_says_which_maps_are_enabled(shipped: MapSet) -> None:
    scenarios = Scenarios.load(scenarios_file(REPO / "maps"), shipped)
    for item in scenarios.view():
        assert item["maps"] == scenarios.expand(item["name"])
        assert sorted(item["enabled"] + item["disabled"]) == sorted(item["maps"])
        assert all(shipped[n].enabled for n in item["enabled"])
        assert not any(shipped[n].enabled for n in item["disabled"])
