"""`dualwrite sync ...` against a fake management API served by httpx.MockTransport (the CLI's own logic only)."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from core.cli import api, config
from core.cli.api import Seams
from core.cli.main import app, main

PREFIX = "/api/manage/v1/sync"


def progress(name: str, status: str = "done", source: str = "fno", **counts: Any) -> dict[str, Any]:
    item = {"map": name, "source": source, "status": status, "pages_read": 0, "pages_done": 0, "last_page": False,
            "read": 0, "written": 0, "matched": 0, "skipped": 0, "failed": 0, "differs": 0, "missing_on_target": 0,
            "missing_on_source": 0, "rows_per_s": None, "eta_s": None}
    item.update(counts)
    return item


def a_run(run_id: str = "r1", status: str = "queued", kind: str = "initial", maps: list | None = None,
          **extra: Any) -> dict[str, Any]:
    run = {"id": run_id, "kind": kind, "status": status, "dry_run": False, "created_at": "2024-05-01T10:00:00Z",
           "updated_at": "2024-05-01T10:00:05Z", "finished_at": None, "message": None,
           "maps": maps if maps is not None else [progress("customers", "waiting")], "sample": []}
    run.update(extra)
    return run


class FakeEngine:
    """The contract of the management API: answers from a script, records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.started: dict[str, Any] = a_run()
        self.polls: list[dict[str, Any] | httpx.Response] = []  # successive answers to GET /runs/{id}
        self.listing: list[dict[str, Any]] = []
        self.drift_items: list[dict[str, Any]] = []
        self.error: httpx.Response | None = None  # answer every request with this

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            return self.error
        path = request.url.path.removeprefix(PREFIX)
        if request.method == "POST" and path == "/runs":
            return httpx.Response(202, json=self.started)
        if request.method == "GET" and path == "/runs":
            return httpx.Response(200, json={"runs": self.listing})
        if request.method == "GET" and path.endswith("/drift"):
            return httpx.Response(200, json={"items": self.drift_items})
        if request.method == "POST" and path.endswith("/cancel"):
            return httpx.Response(200, json=a_run(path.split("/")[2], "cancelled"))
        if request.method == "GET" and path.startswith("/runs/"):
            answer = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
            return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)
        return httpx.Response(404, json={"type": "about:blank", "title": "Not Found", "status": 404,
                                         "detail": f"no route {path}"})

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.content]

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix(PREFIX)}" for r in self.requests]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def seams(engine, sleeps) -> Seams:
    return Seams(transport=httpx.MockTransport(engine.handler), sleep=sleeps.append)


def run_cli(seams: Seams, *argv: str) -> int:
    return main(["sync", *argv], obj=seams)


# --- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["initial"],
    ["initial", "customers", "--all"],
    ["reconcile"],
    ["reconcile", "customers", "--all", "--repair"],
    ["initial", "customers", "--source", "sql"],
    ["drift", "r1", "--limit", "0"],
    ["show"],
    ["cancel"],
    ["initial", "--bogus"],
])
def test_usage_errors_exit_2_and_call_nothing(seams, engine, capsys, argv):
    assert run_cli(seams, *argv) == 2
    assert engine.requests == []
    assert "Usage:" in capsys.readouterr().err


def test_group_without_a_command_shows_help_and_exits_2(seams, capsys):
    assert run_cli(seams) == 2
    out = capsys.readouterr().out
    for command in ("initial", "reconcile", "runs", "show", "drift", "cancel"):
        assert command in out


def test_help_documents_the_exit_codes(seams, capsys):
    assert run_cli(seams, "initial", "--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit codes of initial and reconcile: 0" in out and "3 it completed but rows failed" in out and "130" in out


# --- requests -------------------------------------------------------------------------------------------


def test_initial_starts_a_run_with_the_contract_body_url_and_key(seams, engine):
    assert run_cli(seams, "initial", "customers", "vendors", "customers", "--no-wait") == 0
    [request] = engine.requests
    assert (request.method, str(request.url)) == ("POST", "http://127.0.0.1:7071/api/manage/v1/sync/runs")
    assert request.headers["x-functions-key"] == "local-master-key"
    assert json.loads(request.content) == {"kind": "initial", "maps": ["customers", "vendors"], "source": None,
                                           "dry_run": False, "retry_failed_of": None}


def test_initial_all_with_source_and_dry_run(seams, engine):
    assert run_cli(seams, "initial", "--all", "--source", "dataverse", "--dry-run", "--no-wait") == 0
    assert engine.bodies() == [{"kind": "initial", "maps": [], "source": "dataverse", "dry_run": True,
                                "retry_failed_of": None}]


def test_retry_failed_needs_no_maps(seams, engine):
    assert run_cli(seams, "initial", "--retry-failed", "r0", "--no-wait") == 0
    assert engine.bodies() == [{"kind": "initial", "maps": [], "source": None, "dry_run": False,
                                "retry_failed_of": "r0"}]


@pytest.mark.parametrize(("flags", "kind"), [([], "compare"), (["--repair"], "repair")])
def test_reconcile_starts_a_compare_or_a_repair(seams, engine, flags, kind):
    engine.started = a_run(kind=kind)
    assert run_cli(seams, "reconcile", "customers", *flags, "--no-wait") == 0
    assert engine.calls() == ["POST /runs"]
    assert engine.bodies() == [{"kind": kind, "maps": ["customers"], "source": None, "dry_run": False,
                                "retry_failed_of": None}]


def test_no_wait_prints_the_run_id_and_returns(seams, engine, capsys):
    engine.started = a_run("run-42")
    assert run_cli(seams, "initial", "--all", "--no-wait") == 0
    assert engine.calls() == ["POST /runs"]
    assert "dualwrite sync show run-42" in capsys.readouterr().out


def test_url_and_key_from_the_environment(seams, engine, monkeypatch):
    monkeypatch.setenv("DUALWRITE_URL", "https://engine.example/")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    assert run_cli(seams, "runs") == 0
    [request] = engine.requests
    assert str(request.url) == "https://engine.example/api/manage/v1/sync/runs"
    assert request.headers["x-functions-key"] == "env-key"


def test_options_override_the_environment(seams, engine, monkeypatch):
    monkeypatch.setenv("DUALWRITE_URL", "https://engine.example")
    monkeypatch.setenv("DUALWRITE_KEY", "env-key")
    assert run_cli(seams, "runs", "--url", "http://127.0.0.1:9999", "--key", "flag-key") == 0
    [request] = engine.requests
    assert str(request.url) == "http://127.0.0.1:9999/api/manage/v1/sync/runs"
    assert request.headers["x-functions-key"] == "flag-key"


def _settings(path, key: str) -> None:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"DEVHOST_MASTER_KEY": key}}))


def test_key_from_local_settings_then_the_sample(seams, engine, tmp_path):
    _settings(tmp_path / "local.settings.sample.json", "sample-key")
    assert run_cli(seams, "runs") == 0
    _settings(tmp_path / "local.settings.json", "local-key")
    assert run_cli(seams, "runs") == 0
    assert [r.headers["x-functions-key"] for r in engine.requests] == ["sample-key", "local-key"]


def test_a_settings_file_without_the_key_falls_through(tmp_path):
    (tmp_path / "local.settings.json").write_text("{not json")
    (tmp_path / "local.settings.sample.json").write_text(json.dumps({"Values": {}}))
    assert config.resolve(directory=tmp_path).key == "local-master-key"


def test_runs_lists_a_table_with_the_figures(seams, engine, capsys):
    engine.listing = [
        a_run("r2", "running", maps=[progress("customers", "running", read=1500, written=1200, failed=7)]),
        a_run("r1", "completed", kind="compare", finished_at="2024-05-01T10:03:00Z",
              maps=[progress("vendors", read=40, matched=38, differs=2)]),
    ]
    assert run_cli(seams, "runs") == 0
    assert engine.calls() == ["GET /runs"]
    out = capsys.readouterr().out
    lines = out.splitlines()
    r2 = next(line for line in lines if line.startswith("r2"))
    assert "running" in r2 and "customers" in r2 and "1,500" in r2 and "1,200" in r2 and "7" in r2
    r1 = next(line for line in lines if line.startswith("r1"))
    assert "compare" in r1 and "2024-05-01 10:03:00" in r1 and "2" in r1
    assert lines.index(r2) < lines.index(r1)  # newest first, as served


def test_runs_json_is_the_api_answer(seams, engine, capsys):
    engine.listing = [a_run("r1", "completed")]
    assert run_cli(seams, "runs", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"runs": engine.listing}


def test_runs_when_there_are_none(seams, capsys):
    assert run_cli(seams, "runs") == 0
    assert "no sync runs yet" in capsys.readouterr().out


def test_show_prints_the_maps_and_a_drift_summary(seams, engine, capsys):
    engine.polls = [a_run("r7", "completed", kind="compare", maps=[
        progress("customers", read=1000, matched=990, differs=6, missing_on_target=3, missing_on_source=1,
                 pages_read=4, pages_done=4, last_page=True),
    ])]
    engine.drift_items = [{"map": "customers", "key": "USMF|C-0001", "kind": "differs", "columns": ["name", "city"]}]
    assert run_cli(seams, "show", "r7") == 0
    assert engine.calls() == ["GET /runs/r7", "GET /runs/r7/drift"]
    assert engine.requests[1].url.params["limit"] == "10"
    out = capsys.readouterr().out
    assert "run r7 · compare · completed" in out
    row = next(line for line in out.splitlines() if line.startswith("customers"))
    assert all(figure in row for figure in ("4/4", "1,000", "990", "6", "3", "1"))
    assert "drift: 6 differ, 3 missing on target, 1 missing on source" in out
    assert "USMF|C-0001" in out and "name, city" in out
    assert "dualwrite sync drift r7 --limit 10" in out


def test_show_json_is_the_run(seams, engine, capsys):
    engine.polls = [a_run("r7", "running")]
    assert run_cli(seams, "show", "r7", "--json") == 0
    assert json.loads(capsys.readouterr().out) == engine.polls[0]


def test_show_keeps_an_odd_run_id_in_one_path_segment(seams, engine):
    engine.polls = [a_run("a/b", "running")]
    assert run_cli(seams, "show", "a/b?x") == 0
    assert engine.requests[0].url.raw_path == b"/api/manage/v1/sync/runs/a%2Fb%3Fx"


def test_drift_passes_map_and_limit_and_prints_the_rows(seams, engine, capsys):
    engine.drift_items = [
        {"map": "customers", "key": "USMF|C-0001", "kind": "missing_on_target", "columns": []},
        {"map": "customers", "key": "USMF|C-0002", "kind": "differs", "columns": ["creditlimit"]},
    ]
    assert run_cli(seams, "drift", "r7", "--map", "customers", "--limit", "2") == 0
    [request] = engine.requests
    assert request.url.path == PREFIX + "/runs/r7/drift"
    assert dict(request.url.params) == {"map": "customers", "limit": "2"}
    out = capsys.readouterr().out
    assert "USMF|C-0001" in out and "missing on target" in out and "creditlimit" in out
    assert "more with --limit" in out


def test_drift_shows_the_error_of_a_listed_failed_row(seams, engine, capsys):
    engine.drift_items = [{"map": "customers", "key": "USMF|C-0003", "kind": "failed", "columns": [],
                           "detail": "Dataverse refused: creditlimit must be positive", "values": None}]
    assert run_cli(seams, "drift", "r7") == 0
    assert "creditlimit must be positive" in capsys.readouterr().out


def test_drift_default_limit_and_nothing_found(seams, engine, capsys):
    assert run_cli(seams, "drift", "r7") == 0
    assert dict(engine.requests[0].url.params) == {"limit": "100"}
    assert "no drift in run r7" in capsys.readouterr().out


def test_cancel_posts_to_the_run(seams, engine, capsys):
    assert run_cli(seams, "cancel", "r3") == 0
    assert engine.calls() == ["POST /runs/r3/cancel"]
    assert engine.requests[0].headers["x-functions-key"] == "local-master-key"
    assert "run r3: cancelled" in capsys.readouterr().out


# --- following a run ------------------------------------------------------------------------------------


def test_waits_from_queued_through_running_to_completed(seams, engine, sleeps, capsys):
    engine.started = a_run("r1", "queued", maps=[progress("customers", "waiting")])
    engine.polls = [
        a_run("r1", "running", maps=[progress("customers", "running", read=500, written=400, pages_read=1,
                                              pages_done=1, rows_per_s=250.0, eta_s=None)]),
        a_run("r1", "completed", finished_at="2024-05-01T10:01:00Z", maps=[
            progress("customers", "done", read=1000, written=990, matched=10, pages_read=2, pages_done=2,
                     last_page=True)]),
    ]
    assert run_cli(seams, "initial", "customers") == 0
    assert engine.calls() == ["POST /runs", "GET /runs/r1", "GET /runs/r1"]
    assert sleeps == [0.5, 0.5]
    captured = capsys.readouterr()
    # without a terminal the wait is plain lines, one per change, no control codes
    assert "\x1b" not in captured.err and "\r" not in captured.err
    err = captured.err.splitlines()
    assert err[0].startswith("started initial run r1 (customers)")
    assert "run r1: queued" in err and "run r1: running" in err and "run r1: completed" in err
    assert any(line.startswith("customers (fno): running, read 500, written 400") and "250 rows/s" in line
               for line in err)
    row = next(line for line in captured.out.splitlines() if line.startswith("customers"))
    assert "done" in row and "1,000" in row and "990" in row
    assert "run r1 completed: 1,000 read, 990 written, 10 matched, 0 failed" in captured.out


def test_completed_with_failed_rows_exits_3(seams, engine):
    engine.polls = [a_run("r1", "completed", maps=[progress("customers", read=10, written=8, failed=2)])]
    assert run_cli(seams, "initial", "customers") == 3


def test_reconcile_finding_drift_exits_3(seams, engine, capsys):
    engine.started = a_run(kind="compare")
    engine.polls = [a_run("r1", "completed", kind="compare",
                          maps=[progress("customers", read=10, matched=9, missing_on_target=1)])]
    assert run_cli(seams, "reconcile", "--all") == 3
    assert "dualwrite sync drift r1" in capsys.readouterr().out


def test_an_initial_sync_or_repair_that_wrote_what_it_found_exits_0(seams, engine):
    # An initial sync into an empty target finds every row missing there, and writes them: that is success.
    engine.polls = [a_run("r1", "completed", maps=[progress("customers", read=10, written=10,
                                                            missing_on_target=10)])]
    assert run_cli(seams, "initial", "customers") == 0
    engine.started = a_run(kind="repair")
    engine.polls = [a_run("r1", "completed", kind="repair",
                          maps=[progress("customers", read=10, written=2, differs=2, matched=8)])]
    assert run_cli(seams, "reconcile", "--repair", "customers") == 0


def test_reconcile_without_drift_exits_0(seams, engine):
    engine.started = a_run(kind="compare")
    engine.polls = [a_run("r1", "completed", kind="compare", maps=[progress("customers", read=10, matched=10)])]
    assert run_cli(seams, "reconcile", "customers") == 0


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_failed_or_cancelled_run_exits_1_with_its_message(seams, engine, capsys, status):
    engine.polls = [a_run("r1", status, message="F&O answered 500 on page 3")]
    assert run_cli(seams, "initial", "customers") == 1
    assert f"run r1 {status}: F&O answered 500 on page 3" in capsys.readouterr().err


def test_an_unanswered_poll_is_asked_again(seams, engine, sleeps):
    engine.polls = [httpx.Response(503, text="host restarting"), a_run("r1", "completed")]
    assert run_cli(seams, "initial", "customers") == 0
    assert len(sleeps) == 2


def test_an_engine_gone_for_good_while_waiting_fails(seams, engine, sleeps, capsys):
    engine.polls = [httpx.Response(503, text="down")]
    assert run_cli(seams, "initial", "customers") == 1
    assert len(sleeps) == api.POLL_PATIENCE_S / 0.5
    assert "HTTP 503 Service Unavailable: down" in capsys.readouterr().err


def test_ctrl_c_stops_waiting_without_cancelling(engine, capsys):
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    engine.started = a_run("r9", "running")
    seams = Seams(transport=httpx.MockTransport(engine.handler), sleep=interrupted)
    assert run_cli(seams, "initial", "customers") == 130
    assert engine.calls() == ["POST /runs"]  # no cancel
    err = capsys.readouterr().err
    assert "stopped waiting; run r9 goes on (not cancelled)" in err and "dualwrite sync cancel r9" in err


def test_on_a_terminal_the_wait_is_a_progress_bar_per_map(engine, sleeps):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=160, color_system=None)
    engine.started = a_run("r1", "queued", maps=[progress("customers", "waiting"), progress("vendors", "waiting")])
    engine.polls = [
        a_run("r1", "running", maps=[
            progress("customers", "running", read=500, written=480, failed=3, rows_per_s=120.0, eta_s=75),
            progress("vendors", "running", source="dataverse", read=200, written=100, last_page=True)]),
        a_run("r1", "completed", maps=[progress("customers", read=1000, written=990, failed=10),
                                       progress("vendors", source="dataverse", read=200, written=200)]),
    ]
    seams = Seams(transport=httpx.MockTransport(engine.handler), sleep=sleeps.append, progress_console=terminal)
    assert run_cli(seams, "initial", "--all") == 3  # failed rows
    shown = screen.getvalue()
    assert "customers (fno)" in shown and "vendors (dataverse)" in shown
    assert "483/500+" in shown and "120 rows/s" in shown and "ETA 0:01:15" in shown  # while still reading pages
    assert "100/200" in shown  # all pages read: a known total
    assert "1,000/1,000" in shown and "written 990" in shown and "failed 10" in shown


# --- errors ---------------------------------------------------------------------------------------------


def test_problem_json_is_shown_as_title_and_detail(seams, engine, capsys):
    engine.error = httpx.Response(409, headers={"content-type": "application/problem+json"}, json={
        "type": "https://dualwrite/problems/run-active", "title": "A run is active",
        "status": 409, "detail": "run r1 is still running for customers"})
    assert run_cli(seams, "initial", "customers") == 1
    captured = capsys.readouterr()
    assert captured.err.strip().endswith("A run is active: run r1 is still running for customers")
    assert "run r1" not in captured.out


def test_not_found_run(seams, engine, capsys):
    engine.error = httpx.Response(404, json={"type": "about:blank", "title": "Not Found", "status": 404,
                                             "detail": "no sync run r404"})
    assert run_cli(seams, "show", "r404") == 1
    assert "Not Found: no sync run r404" in capsys.readouterr().err


def test_a_wrong_key_says_which_header(seams, engine, capsys):
    engine.error = httpx.Response(401)
    assert run_cli(seams, "runs", "--key", "wrong") == 1
    err = capsys.readouterr().err
    assert "HTTP 401 Unauthorized" in err and "x-functions-key" in err and "wrong" not in err


def test_an_engine_that_is_not_running(capsys):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert run_cli(Seams(transport=httpx.MockTransport(refused)), "runs") == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot reach the engine at http://127.0.0.1:7071" in err and "make run" in err


def test_cli_runner_with_the_seams(engine, sleeps):
    engine.listing = [a_run("r5", "completed", maps=[progress("customers", read=3, written=3)])]
    result = CliRunner().invoke(app, ["sync", "runs"], obj=Seams(transport=httpx.MockTransport(engine.handler)))
    assert result.exit_code == 0, result.output
    assert "r5" in result.output and "completed" in result.output
