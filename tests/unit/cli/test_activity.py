"""`dualwrite activity list|tail` against a fake activity route (httpx.MockTransport) serving the contract of
functions/admin.py: newest first, `since`/`until` inclusive (the last 24 hours by default), filters, `limit`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import typer

from core.cli import activity as activity_cli
from core.cli.api import Seams
from core.cli.main import main
from core.sync.domain import OUTCOMES

ROUTE = "/api/manage/v1/activity"
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def an_entry(seconds: float, key: str = "USMF|US-001", outcome: str = "applied", map: str = "customers",
             **extra: Any) -> dict[str, Any]:
    entry = {"map": map, "key": key, "source": "fno", "operation": "update", "outcome": outcome,
             "reason": f"{outcome} at {seconds:g}", "event_id": f"ev-{seconds:g}", "message_id": f"m-{seconds:g}",
             "target_id": None, "detail": None, "latency_ms": 123.4 if outcome == "applied" else None,
             "at": (T0 + timedelta(seconds=seconds)).isoformat()}
    entry.update(extra)
    return entry


class FakeActivity:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.entries: list[dict[str, Any]] = []
        self.now = T0 + timedelta(hours=1)
        self.answers: list[httpx.Response] = []  # answered first, before the log itself

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.path == ROUTE
        if self.answers:
            return self.answers.pop(0)
        params = request.url.params
        until = datetime.fromisoformat(params["until"]) if "until" in params else self.now
        since = datetime.fromisoformat(params["since"]) if "since" in params else until - timedelta(hours=24)
        found = [e for e in self.entries
                 if since <= datetime.fromisoformat(e["at"]) <= until
                 and all(params.get(name) in (None, e[name]) for name in ("map", "key", "outcome"))]
        found.sort(key=lambda e: e["at"], reverse=True)
        return httpx.Response(200, json={"entries": found[: int(params.get("limit", "100"))]})

    def params(self) -> list[dict[str, str]]:
        return [dict(r.url.params) for r in self.requests]


@pytest.fixture
def log() -> FakeActivity:
    return FakeActivity()


@pytest.fixture
def seams(log) -> Seams:
    return Seams(transport=httpx.MockTransport(log.handler), sleep=lambda _: None)


def run_cli(seams: Seams, *argv: str) -> int:
    return main(["activity", *argv], obj=seams)


def test_the_outcomes_are_the_engines():
    assert tuple(activity_cli.Outcome) == OUTCOMES


@pytest.mark.parametrize("argv", [
    ["list", "--outcome", "lost"],
    ["list", "--limit", "0"],
    ["list", "--since", "yesterday"],
    ["tail", "-n", "-1"],
    ["tail", "--interval", "0"],
])
def test_usage_errors_exit_2_and_call_nothing(seams, log, capsys, argv):
    assert run_cli(seams, *argv) == 2
    assert log.requests == []
    assert "Usage:" in capsys.readouterr().err


# --- times ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("15m", T0 - timedelta(minutes=15)),
    ("2h", T0 - timedelta(hours=2)),
    ("1d", T0 - timedelta(days=1)),
    ("1h30m", T0 - timedelta(minutes=90)),
    ("90s", T0 - timedelta(seconds=90)),
    ("2024-04-30T08:00:00Z", datetime(2024, 4, 30, 8, tzinfo=UTC)),
    ("2024-04-30T08:00:00+02:00", datetime(2024, 4, 30, 6, tzinfo=UTC)),
])
def test_since_takes_a_time_ago_or_an_iso_time(text, expected):
    assert activity_cli.parse_time(text, now=lambda: T0) == expected


def test_a_time_without_a_zone_is_local_time():
    parsed = activity_cli.parse_time("2024-04-30T08:00:00")
    assert parsed is not None and parsed.tzinfo is not None
    assert parsed == datetime(2024, 4, 30, 8).astimezone()


@pytest.mark.parametrize("text", ["yesterday", "15", "m15", "1h 30m", "2024-13-01"])
def test_other_times_are_refused(text):
    with pytest.raises(typer.BadParameter, match="15m, 2h, 1d"):
        activity_cli.parse_time(text)


# --- list -----------------------------------------------------------------------------------------------


def test_list_is_a_table_newest_first_with_the_filters_on_the_route(seams, log, capsys):
    log.entries = [an_entry(1), an_entry(2, outcome="skipped", reason="echo of our own write"),
                   an_entry(3, key="USMF|US-002")]
    assert run_cli(seams, "list", "--map", "customers", "--key", "USMF|US-001", "--since", "2024-05-01T09:00:00Z",
                   "--until", "2024-05-01T11:00:00+00:00", "--limit", "50") == 0
    assert log.params() == [{"map": "customers", "key": "USMF|US-001", "limit": "50",
                             "since": "2024-05-01T09:00:00+00:00", "until": "2024-05-01T11:00:00+00:00"}]
    assert log.requests[0].headers["x-functions-key"] == "local-master-key"  # --key is the record's here
    out = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert out[0] == "at map key change outcome latency reason"
    assert out[1] == "2024-05-01 10:00:02 customers USMF|US-001 fno update skipped echo of our own write"
    assert out[2] == "2024-05-01 10:00:01 customers USMF|US-001 fno update applied 123 ms applied at 1"
    assert len(out) == 3


def test_the_engine_key_of_activity_commands_is_api_key_and_every_command_takes_it(seams, log):
    assert run_cli(seams, "list", "--api-key", "flag-key", "--key", "USMF|US-001") == 0
    assert log.requests[0].headers["x-functions-key"] == "flag-key"
    assert log.params()[0]["key"] == "USMF|US-001"
    calls: list[httpx.Request] = []
    other = Seams(transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200, json={"errors": []})))
    assert main(["errors", "list", "--api-key", "other-key"], obj=other) == 0
    assert calls[0].headers["x-functions-key"] == "other-key"


def test_list_since_a_time_ago(seams, log):
    before = datetime.now(UTC)
    assert run_cli(seams, "list", "--since", "15m", "--outcome", "failed") == 0
    sent = datetime.fromisoformat(log.params()[0]["since"])
    assert before - timedelta(minutes=15, seconds=1) <= sent <= datetime.now(UTC) - timedelta(minutes=15)
    assert log.params()[0]["outcome"] == "failed"


def test_list_json_is_the_api_answer(seams, log, capsys):
    log.entries = [an_entry(1)]
    assert run_cli(seams, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"entries": log.entries}


def test_an_empty_list_says_what_was_asked(seams, capsys):
    assert run_cli(seams, "list", "--map", "vendors", "--outcome", "failed") == 0
    assert capsys.readouterr().out.strip() == "no activity in the last 24 hours, map vendors, outcome failed"


def test_a_full_list_says_there_may_be_more(seams, log, capsys):
    log.entries = [an_entry(n) for n in range(3)]
    assert run_cli(seams, "list", "--limit", "2") == 0
    assert "(the newest 2; more with --limit" in capsys.readouterr().out


def test_a_refused_window_exits_1_with_the_engines_words(seams, log, capsys):
    log.answers = [httpx.Response(400, json={"title": "Bad parameter",
                                             "detail": "since: the window is over 31 days; ask for a shorter one"})]
    assert run_cli(seams, "list", "--since", "40d") == 1
    assert "since: the window is over 31 days" in capsys.readouterr().err


# --- tail -----------------------------------------------------------------------------------------------


def shown(out: str) -> list[str]:
    """The reasons of the lines printed: which entries, in which order."""
    return [line.split("  ")[-1].strip() for line in out.splitlines() if line.strip()]


def test_tail_prints_the_latest_oldest_first_and_stops(seams, log, capsys):
    log.entries = [an_entry(n) for n in range(15)]
    assert run_cli(seams, "tail", "-n", "3", "--map", "customers") == 0
    assert log.params() == [{"map": "customers", "limit": "3"}]
    assert shown(capsys.readouterr().out) == ["applied at 12", "applied at 13", "applied at 14"]


class Script:
    """The seams' sleep: each look adds what the script says happened meanwhile; Ctrl-C after the last."""

    def __init__(self, log: FakeActivity, steps: list[list[dict[str, Any]] | httpx.Response]) -> None:
        self.log, self.steps, self.sleeps = log, steps, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.steps:
            raise KeyboardInterrupt
        step = self.steps.pop(0)
        if isinstance(step, httpx.Response):
            self.log.answers.append(step)
        else:
            self.log.entries += step


def test_tail_f_prints_each_new_entry_once_as_it_comes_until_ctrl_c(log, capsys):
    log.entries = [an_entry(n) for n in range(5)]
    script = Script(log, [
        [an_entry(5), an_entry(6)],
        [],
        [an_entry(6.5, key="USMF|US-002"), an_entry(7)],
        # stored late: older than the newest seen (7), within LOOKBACK of it: shown once, late
        [an_entry(3.5, reason="stored late")],
        # far older than the lookback: not asked for any more
        [an_entry(-60, reason="too late")],
    ])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f", "-n", "2") == 0  # Ctrl-C ends it cleanly
    out = capsys.readouterr().out
    assert shown(out) == ["applied at 3", "applied at 4", "applied at 5", "applied at 6", "applied at 6.5",
                          "applied at 7", "stored late"]
    assert script.sleeps == [2.0] * 6
    # each look asks from LOOKBACK before the newest entry seen
    assert log.params()[0] == {"limit": "2"}
    assert log.params()[1] == {"since": (T0 + timedelta(seconds=4) - activity_cli.LOOKBACK).isoformat(),
                               "limit": "1000"}
    assert log.params()[-1]["since"] == (T0 + timedelta(seconds=7) - activity_cli.LOOKBACK).isoformat()


def test_tail_f_does_not_show_what_was_there_before_it_started(log, capsys):
    # 30 entries in the last 10 s before the start: -n 2 shows two, and the first look must not show the rest
    log.entries = [an_entry(n / 3) for n in range(30)]
    script = Script(log, [[], [an_entry(20)]])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f", "-n", "2") == 0
    assert shown(capsys.readouterr().out) == ["applied at 9.33333", "applied at 9.66667", "applied at 20"]


def test_tail_f_from_an_empty_log_shows_everything_that_comes(log, capsys):
    script = Script(log, [[], [an_entry(1), an_entry(2, outcome="failed")]])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f", "--outcome", "failed") == 0
    assert shown(capsys.readouterr().out) == ["failed at 2"]
    assert all(p.get("outcome") == "failed" for p in log.params())
    assert "since" not in log.params()[1]  # nothing seen yet: the route's own window


def test_tail_f_pages_back_when_an_answer_is_full(log, capsys, monkeypatch):
    monkeypatch.setattr(activity_cli, "MAX_LIMIT", 3)
    log.entries = [an_entry(0)]
    script = Script(log, [[an_entry(n) for n in range(1, 9)]])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f", "-n", "1") == 0
    assert shown(capsys.readouterr().out) == [f"applied at {n}" for n in range(9)]
    untils = [p.get("until") for p in log.params()[2:]]  # after the first look and the baseline
    assert untils[0] is None and all(untils[1:])


def test_tail_f_json_is_one_object_a_line(log, capsys):
    log.entries = [an_entry(1)]
    script = Script(log, [[an_entry(2)]])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f", "--json") == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [an_entry(1), an_entry(2)]


def test_tail_f_waits_for_an_engine_that_does_not_answer(log, capsys):
    log.entries = [an_entry(1)]
    script = Script(log, [httpx.Response(503, text="restarting"), httpx.Response(502), [an_entry(2)]])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f", "--interval", "5") == 0
    captured = capsys.readouterr()
    assert shown(captured.out) == ["applied at 1", "applied at 2"]
    err = [" ".join(line.split()) for line in captured.err.splitlines()]
    assert len([line for line in err if line.startswith("the engine does not answer (HTTP 503")]) == 1
    assert "still trying every 5 s" in err[0] and "the engine answers again" in err
    assert script.sleeps == [5.0] * 4


def test_tail_f_stops_with_1_on_an_error_that_waiting_does_not_mend(log, capsys):
    log.entries = [an_entry(1)]
    script = Script(log, [httpx.Response(401)])
    seams = Seams(transport=httpx.MockTransport(log.handler), sleep=script.sleep)
    assert run_cli(seams, "tail", "-f") == 1
    assert "HTTP 401 Unauthorized" in capsys.readouterr().err
