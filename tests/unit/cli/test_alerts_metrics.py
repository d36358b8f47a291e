"""`dualwrite metrics` and `dualwrite alerts ...` against fake answers of the management API's metrics and alerts
routes: the options that change a rule (only what they give, the scope part by part), the tables, problem+json
answers naming the field, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cli.alerts import Direction, Metric, Op, condition, merge_rule, rule_changes
from core.cli.api import Seams
from core.cli.main import main
from core.ops.alerts.rules import COMPARE, DEFAULT_RULES, AlertRule
from core.ops.alerts.rules import METRICS as RULE_METRICS
from core.ops.meter import DIRECTIONS

PREFIX = "/api/manage/v1"

A_RULE: dict[str, Any] = {
    "name": "lag", "description": "customers fall behind", "enabled": True, "metric": "lag_p95_s", "op": ">",
    "threshold": 60, "window_minutes": 15, "category": None, "scope": {"map": "customers", "direction": "to_fno"},
    "notify": True, "pause": False, "resume_when_clear": False, "recipients": ["ops@example.com"],
    "cooldown_minutes": 30,
}


def serving(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[Seams, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    return Seams(transport=httpx.MockTransport(record)), requests


def squeezed(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def problem(status: int, title: str, detail: str, **more: Any) -> httpx.Response:
    return httpx.Response(status, json={"type": "about:blank", "status": status, "title": title, "detail": detail,
                                        **more}, headers={"content-type": "application/problem+json"})


# --- the engine's vocabulary ---------------------------------------------------------------------------


def test_the_options_offer_what_the_engine_takes():
    assert [str(m) for m in Metric] == list(RULE_METRICS)
    assert [str(o) for o in Op] == list(COMPARE)
    assert [str(d) for d in Direction] == list(DIRECTIONS)
    AlertRule.model_validate(A_RULE)  # the sample rule of these tests is one the engine takes


def test_a_condition_is_worded_as_the_engine_words_it():
    for rule in DEFAULT_RULES:
        assert condition(rule.model_dump(mode="json")) == rule.condition()


# --- options -> rule ------------------------------------------------------------------------------------


def test_only_the_options_given_change_the_rule():
    changes = rule_changes(threshold=120.0, direction="to_dataverse", notify=False, enabled=False)
    assert changes == {"threshold": 120, "notify": False, "enabled": False, "scope": {"direction": "to_dataverse"}}
    merged = merge_rule(A_RULE, "lag", changes)
    assert merged == {**A_RULE, "threshold": 120, "notify": False, "enabled": False,
                      "scope": {"map": "customers", "direction": "to_dataverse"}}  # the map kept
    assert A_RULE["scope"] == {"map": "customers", "direction": "to_fno"}  # the stored rule untouched


def test_empty_or_star_means_any_and_recipients_replace_the_list():
    changes = rule_changes(map_name="*", category="", recipients=["a@example.com", " ", "b@example.com"])
    merged = merge_rule(A_RULE, "lag", changes)
    assert merged["scope"] == {"map": None, "direction": "to_fno"}
    assert merged["category"] is None
    assert merged["recipients"] == ["a@example.com", "b@example.com"]
    assert merge_rule(A_RULE, "lag", rule_changes(recipients=[""]))["recipients"] == []


def test_a_new_rule_is_the_options_alone_named_by_the_argument():
    changes = rule_changes(metric="errors", op=">=", threshold=5.0, window=10.0, pause=True, resume_when_clear=True,
                           cooldown=0.5)
    assert merge_rule(None, "too-many", changes) == {
        "name": "too-many", "metric": "errors", "op": ">=", "threshold": 5, "window_minutes": 10, "pause": True,
        "resume_when_clear": True, "cooldown_minutes": 0.5}
    assert merge_rule({"name": "other", "threshold": 1}, "mine", {})["name"] == "mine"


# --- alerts set -----------------------------------------------------------------------------------------


def rules_store(rules: dict[str, dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """The rules routes over a dict, as the engine serves them."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix(PREFIX)
        if path == "/alerts/rules":
            return httpx.Response(200, json={"rules": list(rules.values())})
        if path == "/alerts":
            return httpx.Response(200, json={"alerts": []})
        name = path.removeprefix("/alerts/rules/")
        if request.method == "GET":
            return httpx.Response(200, json=rules[name], headers={"ETag": f'"{len(str(rules[name]))}"'}) \
                if name in rules else problem(404, "Not found", f"no alert rule {name!r}")
        if request.method == "PUT":
            if_match = request.headers.get("if-match")
            if if_match is not None and (name not in rules or if_match != f'"{len(str(rules[name]))}"'):
                return problem(412, "Rule changed", f"rule {name!r} changed since the ETag in If-Match was read")
            body = json.loads(request.content)
            if body.get("metric") not in ("errors", "lag_p95_s"):
                return problem(422, "Invalid rule", "metric: not a metric", field="metric")
            new = name not in rules
            rules[name] = body
            return httpx.Response(201 if new else 200, json=body)
        if request.method == "DELETE":
            if rules.pop(name, None) is None:
                return problem(404, "Not found", f"no alert rule {name!r}")
            return httpx.Response(204)
        return httpx.Response(405)

    return handler


def test_set_reads_the_rule_then_puts_it_back_with_only_the_options_changed(capsys):
    rules = {"lag": dict(A_RULE)}
    seams, requests = serving(rules_store(rules))
    assert main(["alerts", "set", "lag", "--threshold", "90", "--pause", "--resume-when-clear"], obj=seams) == 0
    assert [(r.method, r.url.path) for r in requests] == [
        ("GET", f"{PREFIX}/alerts/rules/lag"), ("PUT", f"{PREFIX}/alerts/rules/lag")]
    assert json.loads(requests[1].content) == {**A_RULE, "threshold": 90, "pause": True, "resume_when_clear": True}
    assert requests[1].headers["if-match"] == f'"{len(str(A_RULE))}"'  # the rule as it was read, or nothing
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "rule lag updated"
    assert "condition lag_p95_s > 90 s over 15 min" in out
    assert "scope customers to F&O" in out
    assert "actions notify ops@example.com (cool-down 30 min); pause the map, resume when clear" in out


def test_set_creates_a_rule_from_a_file_and_says_so(tmp_path: Path, capsys):
    rules: dict[str, dict[str, Any]] = {}
    seams, requests = serving(rules_store(rules))
    file = tmp_path / "rule.json"
    file.write_text(json.dumps({**A_RULE, "name": "lag2"}))
    assert main(["alerts", "set", "lag2", "--file", str(file), "--disable", "--json"], obj=seams) == 0
    assert [r.method for r in requests] == ["PUT"]  # the file is the rule: nothing read first
    assert json.loads(capsys.readouterr().out) == {**A_RULE, "name": "lag2", "enabled": False}
    assert rules["lag2"]["enabled"] is False
    file.write_text(json.dumps({**A_RULE, "name": "other"}))
    assert main(["alerts", "set", "lag2", "--file", str(file)], obj=seams) == 2  # a file of another rule
    assert "not 'lag2'" in capsys.readouterr().err


def test_a_rule_changed_between_the_read_and_the_put_is_not_overwritten(capsys):
    rules = {"lag": dict(A_RULE)}
    store = rules_store(rules)

    def meanwhile(request: httpx.Request) -> httpx.Response:
        answer = store(request)
        if request.method == "GET":
            rules["lag"] = {**A_RULE, "threshold": 5}  # someone else's change after our read
        return answer

    seams, _ = serving(meanwhile)
    assert main(["alerts", "set", "lag", "--window", "5"], obj=seams) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "Rule changed: rule 'lag' changed since the ETag in If-Match was read: nothing was changed" in err
    assert rules["lag"] == {**A_RULE, "threshold": 5}


def test_a_refused_rule_names_the_field_and_exits_1(capsys):
    seams, _ = serving(rules_store({}))
    assert main(["alerts", "set", "odd", "--metric", "dead_letters", "--threshold", "1"], obj=seams) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "Invalid rule: metric: not a metric" in err
    assert main(["alerts", "set", "odd"], obj=seams) == 2  # nothing to set
    assert main(["alerts", "set", "odd", "--metric", "nope"], obj=seams) == 2
    assert main(["alerts", "set", "odd", "--direction", "sideways"], obj=seams) == 2


def test_problem_field_is_added_when_the_detail_does_not_name_it(capsys):
    seams, _ = serving(lambda request: problem(422, "Invalid rule", "must be a number", field="threshold"))
    assert main(["alerts", "set", "x", "--file", "-", "--url", "http://engine"], obj=seams) == 2  # stdin is empty
    seams, _ = serving(lambda request: problem(422, "Invalid rule", "must be a number", field="threshold")
                       if request.method == "PUT" else problem(404, "Not found", "no rule"))
    assert main(["alerts", "set", "x", "--threshold", "1"], obj=seams) == 1
    assert "Invalid rule: must be a number (field: threshold)" in " ".join(capsys.readouterr().err.split())


def test_delete_takes_a_204_and_an_unknown_rule_exits_1(capsys):
    rules = {"lag": dict(A_RULE)}
    seams, requests = serving(rules_store(rules))
    assert main(["alerts", "delete", "lag"], obj=seams) == 0
    assert capsys.readouterr().out.strip() == "rule lag deleted"
    assert rules == {}
    assert main(["alerts", "delete", "lag"], obj=seams) == 1
    assert "Not found: no alert rule 'lag'" in capsys.readouterr().err
    assert requests[-1].method == "DELETE"


# --- alerts list, history, evaluate ---------------------------------------------------------------------


def test_list_shows_each_rule_with_where_it_fires(capsys):
    firing = {"rule": "lag", "subject": "customers", "state": "firing", "since": "2025-01-02T03:04:05Z",
              "value": 75.25, "threshold": 60, "condition": "lag_p95_s > 60 over 15 min",
              "last_notified_at": "2025-01-02T03:04:06Z", "notifications": {"email": "sent"}, "paused_map": True}
    quiet = {**A_RULE, "name": "errors", "metric": "errors", "op": ">=", "threshold": 1, "category": "conflict",
             "scope": {"map": None, "direction": None}, "notify": False, "enabled": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/alerts/rules"):
            return httpx.Response(200, json={"rules": [A_RULE, quiet]})
        return httpx.Response(200, json={"alerts": [firing, {**firing, "subject": "vendors", "state": "ok"}]})

    seams, _ = serving(handler)
    assert main(["alerts", "list"], obj=seams) == 0
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "rule enabled condition scope actions state"
    assert out[1].startswith("lag yes lag_p95_s > 60 s over 15 min customers to F&O notify ops@example.com")
    assert out[1].endswith("firing: customers")
    assert out[2] == "errors no errors (conflict) >= 1 errors over 15 min every map none (history only) disabled"
    assert "firing now: 1" in out
    assert out[-1] == "lag customers 75.25 60 2025-01-02 03:04:05 2025-01-02 03:04:06 (email: sent) yes"
    assert main(["alerts", "list", "--json"], obj=seams) == 0
    assert json.loads(capsys.readouterr().out)["alerts"][0] == firing


def test_history_passes_its_filters_and_evaluate_says_what_changed(capsys):
    entry = {"at": "2025-01-02T03:04:05Z", "rule": "lag", "subject": "customers", "kind": "fired", "value": 75.0,
             "threshold": 60, "condition": "lag_p95_s > 60 over 15 min", "actions": ["notify", "pause"],
             "notifications": {"email": "sent", "webhook": "failed: HTTP 500"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/alerts/history"):
            return httpx.Response(200, json={"entries": [entry]})
        return httpx.Response(200, json={"at": "2025-01-02T03:05:00Z", "rules": 2,
                                         "fired": [{"rule": "lag", "subject": "customers", "value": 75.0}],
                                         "resolved": [{"rule": "errors", "subject": "*", "value": 0}]})

    seams, requests = serving(handler)
    assert main(["alerts", "history", "--rule", "lag", "--limit", "5"], obj=seams) == 0
    assert dict(requests[0].url.params) == {"rule": "lag", "limit": "5"}
    out = squeezed(capsys.readouterr().out)
    assert out[1] == ("2025-01-02 03:04:05 lag customers fired 75 60 lag_p95_s > 60 over 15 min notify, pause "
                      "email: sent, webhook: failed: HTTP 500")
    assert main(["alerts", "evaluate"], obj=seams) == 0
    assert requests[-1].method == "POST" and requests[-1].url.path == f"{PREFIX}/alerts/evaluate"
    assert squeezed(capsys.readouterr().out) == [
        "evaluated 2 rule(s) at 2025-01-02 03:05:00", "fired: lag on customers (value 75)",
        "resolved: errors on * (value 0)"]


# --- metrics --------------------------------------------------------------------------------------------

METRICS = {
    "at": "2025-01-02T03:04:05Z", "window_minutes": 15.0,
    "maps": [{"map": "customers", "direction": "to_dataverse", "mode": "running", "applied": 120,
              "applied_per_s": 0.133, "failed": 2, "skipped": 5, "error_rate_pct": 1.6, "lag_p50_s": 0.85,
              "lag_p95_s": 4.25, "queue_wait_max_s": 1.0, "parked_records": 0, "oldest_parked_age_s": None,
              "backlog_age_s": 75.0, "open_errors": 3, "new_errors": 1, "last_applied_at": "2025-01-02T03:04:00Z"},
             {"map": "customers", "direction": "to_fno", "mode": "running", "applied": 0, "applied_per_s": 0.0,
              "failed": 0, "skipped": 0, "error_rate_pct": None, "lag_p50_s": None, "lag_p95_s": None,
              "queue_wait_max_s": None, "parked_records": 0, "oldest_parked_age_s": None, "backlog_age_s": None,
              "open_errors": 0, "new_errors": 0, "last_applied_at": None}],
    "sides": [{"side": "dataverse", "throttled": 12, "throttled_per_min": 0.8},
              {"side": "fno", "throttled": 0, "throttled_per_min": 0.0}],
    "open_errors": 3, "queue": {"depth": None, "note": "not read from Service Bus"},
    "deployment": {"status": "ok", "at": "2025-01-02T03:00:00Z", "detail": None},
}


def test_metrics_prints_a_row_per_map_and_direction(capsys):
    seams, requests = serving(lambda request: httpx.Response(200, json=METRICS))
    assert main(["metrics", "--window", "15"], obj=seams) == 0
    assert dict(requests[0].url.params) == {"window_minutes": "15"}
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "over the last 15 min, at 2025-01-02 03:04:05"
    assert out[1].split()[:4] == ["map", "direction", "mode", "applied"]
    assert out[2] == ("customers to Dataverse running 120 0.13 2 850 ms 4.2 s 1.2 min 0 3 1.6 % "
                      "2025-01-02 03:04:00")
    assert out[3] == "customers to F&O running 0 0.00 0 0 0"
    assert "Dataverse 12 0.8" in out and "F&O 0 0.0" in out
    assert "queue: depth unknown (not read from Service Bus)" in out
    assert out[-1] == "deployment: ok at 2025-01-02 03:00:00"
    assert main(["metrics", "--json"], obj=seams) == 0
    assert json.loads(capsys.readouterr().out) == METRICS
    assert requests[-1].url.params.get("window_minutes") is None


def test_metrics_prometheus_prints_the_text_as_it_is(capsys):
    text = "# HELP dualwrite_applied_total x\ndualwrite_applied_total{map=\"customers\"} 120\n"
    seams, requests = serving(lambda request: httpx.Response(200, text=text,
                                                              headers={"content-type": "text/plain"}))
    assert main(["metrics", "--prometheus", "--window", "5"], obj=seams) == 0
    assert capsys.readouterr().out == text
    assert requests[0].url.path == f"{PREFIX}/metrics/prometheus"
    assert dict(requests[0].url.params) == {"window_minutes": "5"}
    assert main(["metrics", "--prometheus", "--json"], obj=seams) == 2


@pytest.mark.parametrize("status", [401, 500])
def test_metrics_errors_exit_1(status: int, capsys):
    seams, _ = serving(lambda request: problem(status, "Failed", "no figures"))
    assert main(["metrics"], obj=seams) == 1
    assert "Failed: no figures" in capsys.readouterr().err
