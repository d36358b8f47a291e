"""`dualwrite metrics` and `dualwrite alerts ...` against the whole local stack, run as a user runs them (a process
of its own, `python -m core.cli.main`, the stack as its default profile): a rule set from options, changed by
options (the rest kept), listed, fired and resolved by an evaluation, in the history, refused with its field named,
and deleted; the metrics as a table, as JSON naming the maps, and as Prometheus text.

Its own stack (Azurite and Service Bus emulator included): the rules it stores and the alerts it fires must meet no
other module's tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_cli import Cli, squeezed
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import run_emulator, test_topology_document

pytestmark = pytest.mark.e2e
RULE = "cli-parked"


@pytest.fixture(scope="module")
def alerts_stack(own_azurite: str, devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    with run_emulator(test_topology_document(), name="servicebus-cli-alerts") as emulator, \
            running_stack(own_azurite, emulator, devhost, dataverse_flags=(),
                          # only the CLI evaluates: the minute timer would fire the rule first now and then
                          **{"AzureWebJobs.alerts_timer.Disabled": "true"}) as stack:
        yield stack


@pytest.fixture(scope="module")
def cli(alerts_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI with the stack as its default profile: no flags needed, as after `make run`."""
    runner = Cli(tmp_path_factory.mktemp("cli-alerts"))
    runner.ok("profile", "add", "e2e", "--url", alerts_stack.host.url, "--default",
              stdin=alerts_stack.host.master_key + "\n")
    return runner


def rows_of(text: str, first: str) -> list[list[str]]:
    """The rows of the first table (the rules, in `alerts list`: what fires follows) whose first cell is `first`,
    split into words."""
    lines = squeezed(text)
    end = next((n for n, line in enumerate(lines) if line.startswith("firing now")), len(lines))
    return [line.split() for line in lines[:end] if line.split()[:1] == [first]]


def test_a_rule_is_set_listed_fired_resolved_and_deleted(cli: Cli) -> None:
    # parked records of customers >= 0: true at once (nothing parked is 0), so an evaluation fires it
    out = squeezed(cli.ok("alerts", "set", RULE, "--metric", "parked_records", "--op", ">=", "--threshold", "0",
                          "--map", "customers", "--no-notify", "--description", "cli e2e"))
    assert out[0] == f"rule {RULE} created"
    assert any(line.startswith("scope customers") for line in out)

    # options change only what they give: the metric, scope and description stay
    cli.ok("alerts", "set", RULE, "--window", "5")
    stored = next(r for r in cli.json("alerts", "list")["rules"] if r["name"] == RULE)
    assert (stored["metric"], stored["op"], stored["threshold"], stored["window_minutes"]) == (
        "parked_records", ">=", 0, 5)
    assert stored["scope"]["map"] == "customers" and stored["description"] == "cli e2e" and stored["notify"] is False

    [row] = rows_of(cli.ok("alerts", "list"), RULE)
    assert row[1] == "yes" and "parked_records" in row and row[-1] == "ok"

    evaluated = squeezed(cli.ok("alerts", "evaluate"))
    assert evaluated[0].startswith("evaluated ")
    assert any(line.startswith(f"fired: {RULE} on customers") for line in evaluated), evaluated
    [row] = rows_of(cli.ok("alerts", "list"), RULE)
    assert row[-2:] == ["firing:", "customers"]
    firing = [a for a in cli.json("alerts", "list")["alerts"] if a["rule"] == RULE and a["state"] == "firing"]
    assert [a["subject"] for a in firing] == ["customers"] and firing[0]["value"] == 0

    # no longer true: the next evaluation resolves it
    cli.ok("alerts", "set", RULE, "--op", ">", "--threshold", "1000")
    assert any(line.startswith(f"resolved: {RULE} on customers") for line in squeezed(cli.ok("alerts", "evaluate")))
    entries = cli.json("alerts", "history", "--rule", RULE)["entries"]
    assert [(e["rule"], e["subject"], e["kind"]) for e in entries] == [
        (RULE, "customers", "resolved"), (RULE, "customers", "fired")]  # newest first
    out = squeezed(cli.ok("alerts", "history", "--rule", RULE, "--limit", "1"))
    assert out[0].split()[:4] == ["at", "rule", "subject", "kind"]
    assert f" {RULE} customers resolved " in f" {out[1]} "
    assert out[-1] == "(the newest 1; more with --limit, up to 1000)"

    # the engine refuses a rule that cannot hold, naming the field; nothing is stored
    refused = cli("alerts", "set", "cli-bad", "--metric", "deployment_failed", "--threshold", "0", "--map", "customers")
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "scope" in refused.stderr and "Traceback" not in refused.stderr
    assert all(r["name"] != "cli-bad" for r in cli.json("alerts", "list")["rules"])

    assert cli.ok("alerts", "delete", RULE).strip() == f"rule {RULE} deleted"
    gone = cli("alerts", "delete", RULE)
    assert gone.returncode == 1 and RULE in gone.stderr
    assert all(r["name"] != RULE for r in cli.json("alerts", "list")["rules"])


def test_a_rule_from_a_file(cli: Cli, tmp_path) -> None:
    file = tmp_path / "rule.json"
    file.write_text(json.dumps({"name": "cli-file", "metric": "errors", "op": ">=", "threshold": 3,
                                "window_minutes": 10, "category": "application", "notify": False}))
    assert cli.ok("alerts", "set", "cli-file", "--file", str(file)).startswith("rule cli-file created")
    rule = next(r for r in cli.json("alerts", "list")["rules"] if r["name"] == "cli-file")
    assert (rule["metric"], rule["category"], rule["threshold"]) == ("errors", "application", 3)
    assert cli.ok("alerts", "set", "cli-file", "--file", str(file), "--disable").startswith("rule cli-file updated")
    [row] = rows_of(cli.ok("alerts", "list"), "cli-file")
    assert row[1] == "no" and row[-1] == "disabled"
    cli.ok("alerts", "delete", "cli-file")


def test_metrics_as_a_table_as_json_and_for_prometheus(cli: Cli) -> None:
    report = cli.json("metrics")
    assert {"customers", "vendors"} <= {m["map"] for m in report["maps"]}
    assert {m["direction"] for m in report["maps"]} <= {"to_dataverse", "to_fno"}
    assert {s["side"] for s in report["sides"]} == {"dataverse", "fno"}
    assert cli.json("metrics", "--window", "5")["window_minutes"] == 5

    out = squeezed(cli.ok("metrics"))
    assert out[0].startswith("over the last 15 min")
    assert out[1].split()[:3] == ["map", "direction", "mode"]
    assert any(line.split()[:2] == ["customers", "to"] for line in out)
    assert any(line.startswith("deployment: ") for line in out)

    text = cli.ok("metrics", "--prometheus")
    assert "# TYPE " in text and "customers" in text
