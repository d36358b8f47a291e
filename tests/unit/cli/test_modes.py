"""`dualwrite maps status|pause|resume|stop|start` against a fake management API (httpx.MockTransport).

The fake serves the contract of functions/modes.py; whether a move is allowed, and the 409's detail, come from the
real state machine (core.sync.modes), so the CLI is tested against the engine's own refusals.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from rich.console import Console

from core.cli.api import Seams
from core.cli.main import main
from core.sync.modes import LABELS, MapState, ModeRefused

PREFIX = "/api/manage/v1/modes"


def a_view(name: str = "customers", mode: str = "running", *, records: int = 0, changes: int = 0,
           **extra: Any) -> dict[str, Any]:
    view = {"map": name, "mode": mode, "label": LABELS[mode], "since": None, "by": None, "reason": None,
            "parked": {"records": records, "changes": changes}}
    view.update(extra)
    return view


def catch_up(parked: int, sent: int, left: int, rate: float | None = None,
             finished_at: str | None = None) -> dict[str, Any]:
    return {"parked_at_resume": parked, "sent": sent, "left": left, "rate_per_s": rate,
            "started_at": "2024-05-01T10:00:00+00:00", "finished_at": finished_at}


class FakeEngine:
    """The modes routes: views by map, moves through the real state machine, every request recorded."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.views: dict[str, dict[str, Any]] = {"customers": a_view()}
        self.transitions: dict[str, list[dict[str, Any]]] = {}
        self.polls: list[dict[str, Any] | httpx.Response] = []  # successive answers to GET /modes/{map}, if any
        self.answer_moves_with: dict[str, Any] | None = None  # the view a move answers with, if not the moved one

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raw = request.url.raw_path.decode().partition("?")[0].removeprefix(PREFIX)
        parts = [unquote(part) for part in raw.strip("/").split("/")]
        if request.method == "GET" and parts == [""]:
            return httpx.Response(200, json={"maps": list(self.views.values())})
        name = parts[0]
        if name not in self.views:
            return self.problem(404, "Map not found", f"no map {name!r}")
        if request.method == "GET" and len(parts) == 1:
            if self.polls:
                answer = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
                return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)
            return httpx.Response(200, json={**self.views[name], "transitions": self.transitions.get(name, [])})
        if request.method == "POST" and len(parts) == 2:
            return self.act(name, parts[1], json.loads(request.content) if request.content else {})
        return self.problem(404, "Not Found", f"no route {request.url.path}")

    def act(self, name: str, action: str, body: dict[str, Any]) -> httpx.Response:
        if action not in ("pause", "resume", "stop", "start"):
            return self.problem(400, "Bad parameter", f"action {action!r} is not one of pause, resume, stop, start")
        view = self.views[name]
        try:
            moved, _ = MapState(map=name, mode=view["mode"]).act(action, by="api", reason=body.get("reason", ""))
        except ModeRefused as error:
            return self.problem(409, "Move not allowed", str(error))
        view.update(mode=moved.mode, label=LABELS[moved.mode], since="2024-05-01T10:00:00+00:00", by="api",
                    reason=moved.reason)
        if moved.mode == "catching_up":
            view["catch_up"] = catch_up(view["parked"]["records"], 0, view["parked"]["records"])
        return httpx.Response(202 if action == "resume" else 200, json=self.answer_moves_with or view)

    @staticmethod
    def problem(status: int, title: str, detail: str) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": "application/problem+json"},
                              json={"type": "about:blank", "title": title, "status": status, "detail": detail})

    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix(PREFIX)}" for r in self.requests]


class Clock:
    """The seams' clock and sleep: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def seams(engine, clock) -> Seams:
    return Seams(transport=httpx.MockTransport(engine.handler), sleep=clock.sleep, clock=lambda: clock.now)


def run_cli(seams: Seams, *argv: str) -> int:
    return main(["maps", *argv], obj=seams)


def line_of(text: str, start: str) -> str:
    return next(line.rstrip() for line in text.splitlines() if line.startswith(start))


# --- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["pause"],
    ["resume"],
    ["stop"],
    ["start"],
    ["status", "customers", "vendors"],
    ["resume", "customers", "--wait", "--timeout", "-1"],
    ["pause", "customers", "--reason"],
    ["pause", "customers", "--bogus"],
])
def test_usage_errors_exit_2_and_call_nothing(seams, engine, capsys, argv):
    assert run_cli(seams, *argv) == 2
    assert engine.requests == []
    err = capsys.readouterr().err
    assert "Usage:" in err or "requires an arg" in err


def test_the_group_lists_the_mode_commands(seams, capsys):
    assert run_cli(seams, "--help") == 0
    out = capsys.readouterr().out
    for command in ("status", "pause", "resume", "stop", "start", "validate"):
        assert command in out


# --- status ---------------------------------------------------------------------------------------------


def test_status_lists_every_map_in_a_table(seams, engine, capsys):
    engine.views = {
        "customers": a_view("customers", "paused", records=12, changes=30, since="2024-05-01T09:30:00+00:00",
                            by="alice", reason="nightly load"),
        "vendors": a_view("vendors", "catching_up", records=380, changes=900, since="2024-05-01T10:00:00+00:00",
                          by="bob", catch_up=catch_up(500, 120, 380, 40.0)),
        "products": a_view("products", "running", catch_up=catch_up(7, 7, 0, 3.5, "2024-04-30T08:00:05+00:00")),
    }
    assert run_cli(seams, "status") == 0
    assert engine.calls() == ["GET "]
    assert engine.requests[0].url.path == PREFIX
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:5] == ["map", "mode", "since", "by", "reason"] and "catch-up" in header
    customers = line_of(out, "customers")
    assert "paused" in customers and "2024-05-01 09:30:00" in customers and "alice" in customers
    assert "nightly load" in customers and customers.split()[-2:] == ["12", "30"]
    vendors = line_of(out, "vendors")
    assert "catching up" in vendors and "bob" in vendors and "380" in vendors and "900" in vendors
    assert vendors.endswith("120/500, 380 left, 40.0/s")
    products = line_of(out, "products")
    assert "running" in products and products.endswith("7/7, done 2024-04-30 08:00:05")


def test_status_of_one_map_shows_its_moves_newest_first(seams, engine, capsys):
    engine.views["customers"] = a_view("customers", "catching_up", records=40, changes=41, by="bob",
                                       since="2024-05-01T10:00:00+00:00", reason="load done",
                                       catch_up=catch_up(100, 60, 40, 12.5))
    engine.transitions["customers"] = [
        {"from": "paused", "to": "catching_up", "at": "2024-05-01T10:00:00+00:00", "by": "bob", "reason": "load done"},
        {"from": "running", "to": "paused", "at": "2024-05-01T09:00:00+00:00", "by": "alice", "reason": "nightly"},
    ]
    assert run_cli(seams, "status", "customers") == 0
    assert engine.calls() == ["GET /customers"]
    out = capsys.readouterr().out
    assert "customers: catching up since 2024-05-01 10:00:00 by bob: load done" in out
    assert "parked: 40 record(s), 41 change(s)" in out
    assert "catch-up: 60/100, 40 left, 12.5/s" in out
    newest, older = line_of(out, "2024-05-01 10:00:00"), line_of(out, "2024-05-01 09:00:00")
    assert newest.split()[2:] == ["paused", "catching", "up", "bob", "load", "done"]
    assert older.split()[2:] == ["running", "paused", "alice", "nightly"]
    assert out.index(newest) < out.index(older)


def test_status_of_a_map_nobody_moved(seams, capsys):
    assert run_cli(seams, "status", "customers") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "customers: running"
    assert "no recorded moves" in out and "parked" not in out


@pytest.mark.parametrize("argv", [["status"], ["status", "customers"]])
def test_status_json_is_the_api_answer(seams, engine, capsys, argv):
    engine.views["customers"] = a_view("customers", "paused", records=3, changes=5, reason="x")
    engine.transitions["customers"] = [{"from": "running", "to": "paused", "at": "2024-05-01T09:00:00+00:00",
                                        "by": "api", "reason": "x"}]
    assert run_cli(seams, *argv, "--json") == 0
    expected = {"maps": [engine.views["customers"]]} if argv == ["status"] else {
        **engine.views["customers"], "transitions": engine.transitions["customers"]}
    assert json.loads(capsys.readouterr().out) == expected


def test_status_of_an_unknown_map_exits_1(seams, capsys):
    assert run_cli(seams, "status", "nope") == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "Map not found: no map 'nope'"
    assert captured.out == ""


# --- the moves ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "before", "after", "status"), [
    ("pause", "running", "paused", 200),
    ("resume", "paused", "catching_up", 202),
    ("stop", "running", "stopped", 200),
    ("start", "stopped", "running", 200),
])
def test_each_action_posts_to_its_path_with_the_reason(seams, engine, capsys, action, before, after, status):
    engine.views["customers"] = a_view("customers", before)
    assert run_cli(seams, action, "customers", "--reason", "nightly load") == 0
    [request] = engine.requests
    assert (request.method, str(request.url)) == (
        "POST", f"http://127.0.0.1:7071/api/manage/v1/modes/customers/{action}")
    assert request.headers["x-functions-key"] == "local-master-key"
    assert json.loads(request.content) == {"reason": "nightly load"}
    assert engine.views["customers"]["mode"] == after
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"customers: {LABELS[after]} since 2024-05-01 10:00:00 by api: nightly load"


def test_without_a_reason_no_body_is_sent(seams, engine, capsys):
    assert run_cli(seams, "pause", "customers") == 0
    assert engine.requests[0].content == b""
    out = capsys.readouterr().out
    assert "customers: paused" in out and "pause requested" in out  # the engine's default reason
    assert "parked: 0 record(s), 0 change(s)" in out
    assert "dualwrite maps resume customers" in out


def test_stop_says_how_to_start_again(seams, capsys):
    assert run_cli(seams, "stop", "customers", "--reason", "retired") == 0
    assert "changes of customers are dropped until: dualwrite maps start customers" in capsys.readouterr().out


def test_resume_without_wait_points_to_status(seams, engine, capsys):
    engine.views["customers"] = a_view("customers", "paused", records=500, changes=1200)
    assert run_cli(seams, "resume", "customers") == 0
    assert engine.calls() == ["POST /customers/resume"]
    out = capsys.readouterr().out
    assert "customers: catching up" in out and "catch-up: 0/500, 500 left" in out
    assert "dualwrite maps status customers" in out


def test_a_refused_move_shows_the_detail_and_exits_1(seams, engine, capsys):
    engine.views["customers"] = a_view("customers", "paused")
    assert run_cli(seams, "pause", "customers", "--reason", "again") == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("Move not allowed: map 'customers' is paused: pause is allowed only from "
                                    "catching up, error, initial sync, running")
    assert captured.out == ""
    assert engine.views["customers"]["mode"] == "paused"


def test_resuming_a_running_map_is_refused(seams, capsys):
    assert run_cli(seams, "resume", "customers", "--wait") == 1
    err = capsys.readouterr().err
    assert "map 'customers' is running: resume is allowed only from error, paused" in err


@pytest.mark.parametrize("action", ["pause", "resume", "stop", "start"])
def test_an_unknown_map_exits_1(seams, engine, capsys, action):
    assert run_cli(seams, action, "nope") == 1
    assert engine.calls() == [f"POST /nope/{action}"]
    assert "Map not found: no map 'nope'" in capsys.readouterr().err


def test_action_json_is_the_view(seams, engine, capsys):
    assert run_cli(seams, "stop", "customers", "--reason", "retired", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == engine.views["customers"]
    assert (shown["mode"], shown["reason"]) == ("stopped", "retired")


def test_a_map_name_stays_one_path_segment(seams, engine):
    engine.views["a/b?c"] = a_view("a/b?c", "running")
    assert run_cli(seams, "pause", "a/b?c") == 0
    assert engine.requests[0].url.raw_path == b"/api/manage/v1/modes/a%2Fb%3Fc/pause"


def test_url_and_key_options(seams, engine):
    assert run_cli(seams, "status", "--url", "https://engine.example/", "--key", "flag-key") == 0
    [request] = engine.requests
    assert str(request.url) == "https://engine.example/api/manage/v1/modes"
    assert request.headers["x-functions-key"] == "flag-key"


def test_key_from_local_settings(seams, engine, tmp_path):
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"DEVHOST_MASTER_KEY": "local-key"}}))
    assert run_cli(seams, "stop", "customers") == 0
    assert engine.requests[0].headers["x-functions-key"] == "local-key"


def test_an_engine_that_is_not_running(capsys):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert run_cli(Seams(transport=httpx.MockTransport(refused)), "status") == 1
    assert "cannot reach the engine at http://127.0.0.1:7071" in " ".join(capsys.readouterr().err.split())


# --- resume --wait --------------------------------------------------------------------------------------


def catching(sent: int, left: int, rate: float | None = None) -> dict[str, Any]:
    return a_view("customers", "catching_up", records=left, changes=left, catch_up=catch_up(500, sent, left, rate))


def test_resume_wait_polls_until_the_map_runs(seams, engine, clock, capsys):
    seams.poll_interval = 10.0  # without a terminal, progress is written at most every 10 s
    engine.views["customers"] = a_view("customers", "paused", records=500, changes=1200)
    engine.polls = [
        catching(0, 500),
        catching(250, 250, 125.0),
        a_view("customers", "running", by="catch-up", reason="catch-up done: 500 parked record(s) sent to apply",
               catch_up=catch_up(500, 500, 0, 125.0, "2024-05-01T10:00:04+00:00")),
    ]
    assert run_cli(seams, "resume", "customers", "--reason", "load done", "--wait") == 0
    assert engine.calls() == ["POST /customers/resume"] + ["GET /customers"] * 3
    assert json.loads(engine.requests[0].content) == {"reason": "load done"}
    assert clock.sleeps == [10.0, 10.0, 10.0]
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err and "\r" not in captured.err  # no terminal: plain lines
    err = captured.err.splitlines()
    assert "customers: catching up, catch-up 0/500, 500 left" in err
    assert "customers: catching up, catch-up 250/500, 250 left, 125.0/s" in err
    assert "customers: running, catch-up 500/500, done 2024-05-01 10:00:04" in err
    out = captured.out.splitlines()
    assert out[0] == "customers: running by catch-up: catch-up done: 500 parked record(s) sent to apply"


def test_without_a_terminal_progress_is_written_every_10_s_and_at_each_mode_change(seams, engine, clock, capsys):
    engine.views["customers"] = a_view("customers", "paused", records=500, changes=500)
    engine.polls = [catching(100, 400), catching(200, 300), catching(300, 200),  # at 0.5, 1.0, 1.5 s: not shown
                    *[catching(400, 100)] * 17,  # still 400 sent at 10.0 s: shown
                    a_view("customers", "running")]
    assert run_cli(seams, "resume", "customers", "--wait") == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("customers: ")][1:]
    assert progress == ["customers: catching up, catch-up 0/500, 500 left",
                        "customers: catching up, catch-up 400/500, 100 left",
                        "customers: running"]


def test_resume_wait_that_times_out_exits_1_and_leaves_the_catch_up(seams, engine, clock, capsys):
    engine.views["customers"] = a_view("customers", "paused", records=500, changes=500)
    engine.polls = [catching(100, 400, 50.0)]
    assert run_cli(seams, "resume", "customers", "--wait", "--timeout", "2") == 1
    assert clock.sleeps == [0.5] * 4 and clock.now == 2.0
    assert engine.calls() == ["POST /customers/resume"] + ["GET /customers"] * 4  # no other move
    err = " ".join(capsys.readouterr().err.split())
    assert "customers is still catching up after 2 s (100/500, 400 left, 50.0/s); the catch-up goes on" in err


def test_resume_wait_ends_with_1_when_the_map_leaves_for_another_mode(seams, engine, clock, capsys):
    engine.views["customers"] = a_view("customers", "paused", records=500, changes=500)
    engine.polls = [catching(10, 490), a_view("customers", "error", reason="Dataverse refused 50 writes in a row")]
    assert run_cli(seams, "resume", "customers", "--wait") == 1
    captured = capsys.readouterr()
    assert "customers did not run again: its mode is now error (Dataverse refused 50 writes in a row)" in captured.err
    assert captured.out.splitlines()[0] == "customers: error: Dataverse refused 50 writes in a row"


def test_resume_wait_rides_out_an_engine_restart(seams, engine, clock):
    engine.views["customers"] = a_view("customers", "paused", records=5, changes=5)
    engine.polls = [httpx.Response(503, text="host restarting"), a_view("customers", "running")]
    assert run_cli(seams, "resume", "customers", "--wait") == 0
    assert len(clock.sleeps) == 2


def test_resume_wait_json_prints_only_the_final_view(seams, engine, capsys):
    engine.views["customers"] = a_view("customers", "paused", records=5, changes=5)
    done = a_view("customers", "running", catch_up=catch_up(5, 5, 0, 5.0, "2024-05-01T10:00:01+00:00"))
    engine.polls = [catching(0, 5), done]
    assert run_cli(seams, "resume", "customers", "--wait", "--json") == 0
    assert json.loads(capsys.readouterr().out) == done


def test_resume_wait_that_finds_it_running_at_once_does_not_poll(seams, engine, clock):
    engine.views["customers"] = a_view("customers", "error")
    engine.answer_moves_with = a_view("customers", "running")  # nothing was parked: caught up at once
    assert run_cli(seams, "resume", "customers", "--wait") == 0
    assert engine.calls() == ["POST /customers/resume"] and clock.sleeps == []


def test_ctrl_c_stops_waiting_without_another_move(engine, capsys):
    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    engine.views["customers"] = a_view("customers", "paused", records=5, changes=5)
    assert run_cli(Seams(transport=httpx.MockTransport(engine.handler), sleep=interrupted),
                   "resume", "customers", "--wait") == 130
    assert engine.calls() == ["POST /customers/resume"]
    assert "stopped waiting; the catch-up of customers goes on" in capsys.readouterr().err


def test_on_a_terminal_the_wait_is_a_progress_bar(engine, clock):
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=160, color_system=None)
    engine.views["customers"] = a_view("customers", "paused", records=500, changes=500)
    engine.polls = [catching(250, 250, 125.0), a_view("customers", "running", catch_up=catch_up(500, 500, 0, 125.0))]
    seams = Seams(transport=httpx.MockTransport(engine.handler), sleep=clock.sleep, clock=lambda: clock.now,
                  progress_console=terminal)
    assert run_cli(seams, "resume", "customers", "--wait") == 0
    shown = screen.getvalue()
    assert "customers: catching up" in shown and "250/500, 250 left, 125.0/s" in shown
    assert "━" in shown  # the bar
