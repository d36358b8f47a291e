"""`dualwrite errors list|show|resubmit|discard` against a fake management API (httpx.MockTransport).

The fake serves the contract of functions/admin.py: the list (filters, newest failure first, the text cut to 500
characters, no change), one entry whole, the per-id actions (409 when the entry is not open), and the bulk routes
(`POST /errors/resubmit|discard` with `ids`), or, for an engine from before them, no bulk route at all.
"""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from core.cli import errors as errors_cli
from core.cli.api import Seams
from core.cli.main import main
from core.sync.domain import CATEGORIES, STATUSES

PREFIX = "/api/manage/v1/errors"
LONG_TEXT = ("PATCH http://127.0.0.1:7101/api/data/v9.2/accounts(accountnumber='US-008') -> HTTP 400: "
             "A validation error occurred. The value 500000000000000.5 of 'creditlimit' is outside the valid range."
             "\n\n" + json.dumps({"error": {"code": "0x80044331", "message": "x" * 700}}))


def an_entry(id: str, map: str = "customers", key: str = "USMF|US-008", category: str = "application",
             status: str = "open", last_at: str = "2024-05-01T10:00:05+00:00", **extra: Any) -> dict[str, Any]:
    entry = {"id": id, "map": map, "key": key, "source": "fno", "operation": "update", "category": category,
             "text": LONG_TEXT, "attempts": 1, "change": json.dumps({"entity": "CustomersV3", "keys": {"a": 1}}),
             "session_id": f"{map}|b3", "first_at": "2024-05-01T10:00:00+00:00", "last_at": last_at,
             "status": status, "target_status": 400, "target_code": "0x80044331", "run_id": None}
    entry.update(extra)
    entry["text_length"] = len(entry["text"])
    return entry


class FakeEngine:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.entries: dict[str, dict[str, Any]] = {}
        self.bulk_route: int | None = None  # None: served; else the status an engine without it answers
        self.refuse: dict[str, httpx.Response] = {}  # per-id answers overriding the normal ones
        self.sent = 0

    def add(self, *entries: dict[str, Any]) -> None:
        self.entries.update({e["id"]: e for e in entries})

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raw = request.url.raw_path.decode().partition("?")[0].removeprefix(PREFIX)
        parts = [unquote(part) for part in raw.strip("/").split("/")] if raw.strip("/") else []
        if request.method == "GET" and not parts:
            return self.listing(request.url.params)
        if request.method == "POST" and parts in (["resubmit"], ["discard"]):
            if self.bulk_route is not None:
                return httpx.Response(self.bulk_route)  # the hosts answer an unknown route or method so: no body
            return self.bulk(parts[0], json.loads(request.content))
        if len(parts) >= 1 and parts[0] in self.refuse:
            return self.refuse[parts[0]]
        if parts and parts[0] not in self.entries:
            return self.problem(404, "Not found", f"no error-log entry or dead-letter with id {parts[0]!r}")
        if request.method == "GET" and len(parts) == 1:
            return httpx.Response(200, json=self.entries[parts[0]])
        if request.method == "POST" and len(parts) == 2 and parts[1] in ("resubmit", "discard"):
            return self.act(parts[0], parts[1])
        return httpx.Response(404)

    def listing(self, params: httpx.QueryParams) -> httpx.Response:
        status, limit = params.get("status", "open"), int(params.get("limit", "100"))
        found = [e for e in self.entries.values()
                 if (status == "all" or e["status"] == status)
                 and params.get("map") in (None, e["map"]) and params.get("category") in (None, e["category"])]
        found.sort(key=lambda e: e["last_at"], reverse=True)
        summaries = [{k: (v[:500] if k == "text" else v) for k, v in e.items() if k != "change"}
                     for e in found[:limit]]
        return httpx.Response(200, json={"errors": summaries})

    def act(self, id: str, action: str) -> httpx.Response:
        entry = self.entries[id]
        if entry["status"] != "open":
            return self.problem(409, "Not open", f"error {id!r} is {entry['status']}, not open",
                                status_now=entry["status"])
        entry["status"] = "resubmitted" if action == "resubmit" else "discarded"
        if action == "discard":
            return httpx.Response(200, json={"id": id, "status": "discarded"})
        self.sent += 1
        return httpx.Response(202, json={"id": id, "status": "resubmitted", "message_id": f"resubmit-{self.sent}",
                                         "accepted": True})

    def bulk(self, action: str, body: dict[str, Any]) -> httpx.Response:
        done, failed = [], []
        for id in body["ids"]:
            answer = self.act(id, action) if id in self.entries else self.problem(404, "Not found", f"no {id!r}")
            if answer.status_code < 300:
                done.append(id)
            else:
                failed.append({"id": id, "detail": answer.json()["detail"]})
        verb = "resubmitted" if action == "resubmit" else "discarded"
        return httpx.Response(202 if action == "resubmit" else 200, json={verb: len(done), "ids": done,
                                                                          "failed": failed})

    @staticmethod
    def problem(status: int, title: str, detail: str, **extra: Any) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": "application/problem+json"},
                              json={"type": "about:blank", "title": title, "status": status, "detail": detail,
                                    **extra})

    def calls(self) -> list[str]:
        return [f"{r.method} {unquote(r.url.raw_path.decode().partition('?')[0].removeprefix(PREFIX))}"
                for r in self.requests]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def seams(engine) -> Seams:
    return Seams(transport=httpx.MockTransport(engine.handler), sleep=lambda _: None)


def run_cli(seams: Seams, *argv: str) -> int:
    return main(["errors", *argv], obj=seams)


def lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_the_choices_are_the_engines():
    assert tuple(errors_cli.Category) == CATEGORIES
    assert tuple(errors_cli.Status) == (*STATUSES, "all")


@pytest.mark.parametrize("argv", [
    ["list", "--category", "nope"],
    ["list", "--status", "closed"],
    ["list", "--limit", "0"],
    ["list", "--limit", "1001"],
    ["show"],
    ["resubmit"],
    ["discard"],
    ["resubmit", "a|customers", "--all"],
    ["discard", "a|customers", "--map", "customers"],
    ["resubmit", "--category", "throttled"],
])
def test_usage_errors_exit_2_and_call_nothing(seams, engine, capsys, argv):
    assert run_cli(seams, *argv) == 2
    assert engine.requests == []
    assert "Usage:" in capsys.readouterr().err


# --- list -----------------------------------------------------------------------------------------------


def test_list_is_a_table_of_the_open_entries_newest_first(seams, engine, capsys):
    engine.add(an_entry("e1|customers", last_at="2024-05-01T10:00:05+00:00"),
               an_entry("e2|vendors", map="vendors", key="USMF|V-1", category="throttled", attempts=7,
                        text="GET http://x/data/VendorsV2 -> HTTP 429: Too many requests\n\nretry later",
                        last_at="2024-05-01T11:00:00+00:00"),
               an_entry("e3|customers", status="discarded"))
    assert run_cli(seams, "list") == 0
    [request] = engine.requests
    assert dict(request.url.params) == {"status": "open", "limit": "100"}
    assert request.headers["x-functions-key"] == "local-master-key"
    out = lines(capsys.readouterr().out)
    assert out[0].split() == ["id", "map", "key", "category", "attempts", "first", "last", "message"]
    assert out[1] == ("e2|vendors vendors USMF|V-1 throttled 7 2024-05-01 10:00:00 2024-05-01 11:00:00 "
                      "HTTP 429: Too many requests")
    assert out[2].startswith("e1|customers customers USMF|US-008 application 1 2024-05-01 10:00:00 "
                             "2024-05-01 10:00:05 HTTP 400: A validation error occurred.")
    assert out[2].endswith("…") and "127.0.0.1:7101" not in out[2]  # the short message: no method and URL
    assert len(out) == 3


def test_list_filters_and_shows_the_status_of_all(seams, engine, capsys):
    engine.add(an_entry("e1|customers", category="throttled"), an_entry("e3|customers", category="throttled",
                                                                        status="discarded"))
    assert run_cli(seams, "list", "--map", "customers", "--status", "all", "--category", "throttled",
                   "--limit", "5") == 0
    assert dict(engine.requests[0].url.params) == {"status": "all", "limit": "5", "map": "customers",
                                                   "category": "throttled"}
    out = lines(capsys.readouterr().out)
    assert out[0].split()[4] == "status"
    assert {line.split()[4] for line in out[1:]} == {"open", "discarded"}


def test_a_full_list_says_there_may_be_more(seams, engine, capsys):
    engine.add(*[an_entry(f"e{n}|customers") for n in range(3)])
    assert run_cli(seams, "list", "--limit", "2") == 0
    assert lines(capsys.readouterr().out)[-1] == "(the newest 2; more with --limit, up to 1000)"


def test_an_empty_list_says_what_was_asked(seams, capsys):
    assert run_cli(seams, "list", "--map", "customers", "--category", "conflict") == 0
    assert capsys.readouterr().out.strip() == "no open entries, map customers, category conflict"


def test_list_json_is_the_api_answer(seams, engine, capsys):
    engine.add(an_entry("e1|customers"))
    assert run_cli(seams, "list", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"errors": [{k: (v[:500] if k == "text" else v) for k, v in engine.entries["e1|customers"].items()
                                 if k != "change"}]}


# --- show -----------------------------------------------------------------------------------------------


def test_show_prints_the_whole_text_and_the_change(seams, engine, capsys):
    engine.add(an_entry("evt-1|customers", run_id="r7"))
    assert run_cli(seams, "show", "evt-1|customers") == 0
    assert engine.requests[0].url.raw_path == b"/api/manage/v1/errors/evt-1%7Ccustomers"
    out = capsys.readouterr().out
    facts = lines(out)
    for fact in ("id evt-1|customers", "map customers", "key USMF|US-008", "change fno update", "category application",
                 "status open", "attempts 1", "first failed 2024-05-01 10:00:00", "last failed 2024-05-01 10:00:05",
                 "target said 400 0x80044331", "run r7", "session customers|b3"):
        assert fact in facts
    assert LONG_TEXT in out  # whole: not cut at 500 characters, not folded
    assert f"error text ({len(LONG_TEXT):,} characters):" in out
    assert '{\n  "entity": "CustomersV3",\n  "keys": {\n    "a": 1\n  }\n}' in out
    assert "dualwrite errors resubmit 'evt-1|customers'" in out


def test_show_json_is_the_api_answer(seams, engine, capsys):
    engine.add(an_entry("evt-1|customers"))
    assert run_cli(seams, "show", "evt-1|customers", "--json") == 0
    assert json.loads(capsys.readouterr().out) == engine.entries["evt-1|customers"]


def test_show_of_an_unknown_id_exits_1(seams, capsys):
    assert run_cli(seams, "show", "nope") == 1
    assert capsys.readouterr().err.strip() == "Not found: no error-log entry or dead-letter with id 'nope'"


# --- resubmit and discard by id -------------------------------------------------------------------------


def test_resubmit_ids_one_by_one_with_their_message_ids(seams, engine, capsys):
    engine.add(an_entry("e1|customers"), an_entry("e2|customers"))
    assert run_cli(seams, "resubmit", "e1|customers", "e2|customers", "e1|customers") == 0
    assert engine.calls() == ["POST /e1|customers/resubmit", "POST /e2|customers/resubmit"]
    assert engine.requests[0].url.raw_path == b"/api/manage/v1/errors/e1%7Ccustomers/resubmit"
    assert lines(capsys.readouterr().out) == ["resubmitted e1|customers (sent as resubmit-1)",
                                              "resubmitted e2|customers (sent as resubmit-2)",
                                              "2 resubmitted, 0 not"]


def test_one_entry_that_is_not_open_fails_alone_and_exits_1(seams, engine, capsys):
    engine.add(an_entry("e1|customers", status="discarded"), an_entry("e2|customers"))
    assert run_cli(seams, "discard", "e1|customers", "e2|customers", "gone") == 1
    assert engine.entries["e2|customers"]["status"] == "discarded"
    captured = capsys.readouterr()
    assert lines(captured.out) == ["discarded e2|customers", "1 discarded, 2 not"]
    assert lines(captured.err) == [
        "not discarded: e1|customers: Not open: error 'e1|customers' is discarded, not open",
        "not discarded: gone: Not found: no error-log entry or dead-letter with id 'gone'"]


def test_one_id_prints_one_line(seams, engine, capsys):
    engine.add(an_entry("e1|customers"))
    assert run_cli(seams, "discard", "e1|customers") == 0
    assert capsys.readouterr().out == "discarded e1|customers\n"


def test_an_engine_that_stops_answering_leaves_the_rest_untried(seams, engine, capsys):
    engine.add(*[an_entry(f"e{n}|customers") for n in range(3)])
    engine.refuse["e1|customers"] = httpx.Response(503, text="host restarting")
    assert run_cli(seams, "resubmit", "e0|customers", "e1|customers", "e2|customers") == 1
    assert engine.calls() == ["POST /e0|customers/resubmit", "POST /e1|customers/resubmit"]
    err = lines(capsys.readouterr().err)
    assert err[0].startswith("not resubmitted: e1|customers: HTTP 503")
    assert err[1].startswith("not resubmitted: e2|customers: not tried: HTTP 503")


def test_resubmit_ids_json(seams, engine, capsys):
    engine.add(an_entry("e1|customers"), an_entry("e2|customers", status="resubmitted"))
    assert run_cli(seams, "resubmit", "e1|customers", "e2|customers", "--json") == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"resubmitted": 1, "ids": ["e1|customers"],
                     "failed": [{"id": "e2|customers",
                                 "detail": "Not open: error 'e2|customers' is resubmitted, not open"}],
                     "answers": {"e1|customers": {"id": "e1|customers", "status": "resubmitted",
                                                  "message_id": "resubmit-1", "accepted": True}}}


# --- bulk ------------------------------------------------------------------------------------------------


def throttled_and_others(engine: FakeEngine) -> None:
    engine.add(an_entry("t1|customers", category="throttled", last_at="2024-05-01T10:00:01+00:00"),
               an_entry("t2|customers", category="throttled", last_at="2024-05-01T10:00:02+00:00"),
               an_entry("a1|customers", category="application"),
               an_entry("t3|vendors", map="vendors", category="throttled"),
               an_entry("t4|customers", category="throttled", status="discarded"))


def test_bulk_lists_what_matches_then_sends_exactly_those_ids(seams, engine, capsys):
    throttled_and_others(engine)
    assert run_cli(seams, "resubmit", "--all", "--map", "customers", "--category", "throttled", "--yes") == 0
    assert engine.calls() == ["GET ", "POST /resubmit"]
    assert dict(engine.requests[0].url.params) == {"status": "open", "limit": "1000", "map": "customers",
                                                   "category": "throttled"}
    assert json.loads(engine.requests[1].content) == {"ids": ["t2|customers", "t1|customers"]}
    assert [e["id"] for e in engine.entries.values() if e["status"] == "resubmitted"] == ["t1|customers",
                                                                                        "t2|customers"]
    out = lines(capsys.readouterr().out)
    assert out[0] == "2 open entries match, map customers, category throttled: customers/throttled: 2"
    assert out[-1] == "2 resubmitted, 0 not"


def test_bulk_asks_first_and_a_yes_goes_on(seams, engine, capsys, monkeypatch):
    throttled_and_others(engine)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert run_cli(seams, "discard", "--all", "--category", "throttled") == 0
    captured = capsys.readouterr()
    assert "discard these 3? [y/N]" in captured.err
    assert "3 open entries match, category throttled: customers/throttled: 2, vendors/throttled: 1" in lines(
        captured.out)
    assert engine.calls() == ["GET ", "POST /discard"]


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])
def test_bulk_not_confirmed_does_nothing_and_exits_1(seams, engine, capsys, monkeypatch, answer):
    throttled_and_others(engine)
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    assert run_cli(seams, "resubmit", "--all") == 1
    assert engine.calls() == ["GET "]
    assert "nothing was resubmitted" in capsys.readouterr().err


def test_bulk_with_nothing_matching_asks_nothing(seams, engine, capsys):
    throttled_and_others(engine)
    assert run_cli(seams, "resubmit", "--all", "--map", "products") == 0
    assert engine.calls() == ["GET "]
    assert capsys.readouterr().out.strip() == "no open entries, map products: nothing to resubmit"


@pytest.mark.parametrize("status", [404, 405])
def test_an_engine_without_the_bulk_route_is_served_one_id_at_a_time(seams, engine, capsys, status):
    throttled_and_others(engine)
    engine.bulk_route = status
    assert run_cli(seams, "resubmit", "--all", "--map", "customers", "--category", "throttled", "--yes") == 0
    assert engine.calls() == ["GET ", "POST /resubmit", "POST /t2|customers/resubmit", "POST /t1|customers/resubmit"]
    captured = capsys.readouterr()
    assert "this engine has no bulk resubmit route: resubmit one entry at a time" in captured.err
    assert lines(captured.out)[-3:] == ["resubmitted t2|customers", "resubmitted t1|customers", "2 resubmitted, 0 not"]


def test_bulk_reports_the_entries_the_engine_did_not_take(seams, engine, capsys):
    throttled_and_others(engine)
    engine.entries["t1|customers"]["status"] = "open"
    engine.refuse = {}

    def racing(request: httpx.Request) -> httpx.Response:  # another operator discards t1 meanwhile
        if request.method == "POST":
            engine.entries["t1|customers"]["status"] = "discarded"
        return engine.handler(request)

    seams.transport = httpx.MockTransport(racing)
    assert run_cli(seams, "resubmit", "--all", "--category", "throttled", "--yes") == 1
    captured = capsys.readouterr()
    assert lines(captured.err) == ["not resubmitted: t1|customers: error 't1|customers' is discarded, not open"]
    assert lines(captured.out)[-1] == "2 resubmitted, 1 not"


def test_bulk_json_keeps_stdout_for_the_answer(seams, engine, capsys):
    throttled_and_others(engine)
    assert run_cli(seams, "discard", "--all", "--map", "vendors", "--yes", "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"discarded": 1, "ids": ["t3|vendors"], "failed": []}
    assert "1 open entry match, map vendors: vendors/throttled: 1" in lines(captured.err)


def test_bulk_json_per_id_has_the_same_shape(seams, engine, capsys):
    throttled_and_others(engine)
    engine.bulk_route = 404
    assert run_cli(seams, "discard", "--all", "--map", "vendors", "--yes", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"discarded": 1, "ids": ["t3|vendors"], "failed": []}


def test_bulk_sends_at_most_bulk_ids_a_request_and_says_when_the_list_was_full(seams, engine, capsys, monkeypatch):
    engine.add(*[an_entry(f"e{n}|customers", last_at=f"2024-05-01T10:00:0{n}+00:00") for n in range(5)])
    monkeypatch.setattr(errors_cli, "BULK_IDS", 2)
    monkeypatch.setattr(errors_cli, "MAX_LIMIT", 4)
    assert run_cli(seams, "discard", "--all", "--yes") == 0
    assert engine.calls() == ["GET ", "POST /discard", "POST /discard"]
    assert [json.loads(r.content)["ids"] for r in engine.requests[1:]] == [["e4|customers", "e3|customers"],
                                                                           ["e2|customers", "e1|customers"]]
    out = lines(capsys.readouterr().out)
    assert out[0].startswith("4 open entries match (the newest 4: run it again for the rest)")
    assert engine.entries["e0|customers"]["status"] == "open"


def test_bulk_fallback_after_a_first_chunk_went_in_bulk_is_not_expected_but_counts_right(seams, engine, capsys,
                                                                                         monkeypatch):
    # An engine rolled back mid-run: the first request had the bulk route, the second not.
    engine.add(*[an_entry(f"e{n}|customers", last_at=f"2024-05-01T10:00:0{n}+00:00") for n in range(3)])
    monkeypatch.setattr(errors_cli, "BULK_IDS", 2)
    posts = 0

    def rolled_back(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "POST" and request.url.path in (PREFIX + "/discard",):
            posts += 1
            engine.bulk_route = None if posts == 1 else 404
        return engine.handler(request)

    seams.transport = httpx.MockTransport(rolled_back)
    assert run_cli(seams, "discard", "--all", "--yes", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "discarded": 3, "ids": ["e2|customers", "e1|customers", "e0|customers"], "failed": []}


@pytest.mark.parametrize("width", [200, 160, 100, 60])
def test_on_a_terminal_no_column_is_dropped_however_narrow(width):
    from rich.console import Console

    entries = [an_entry("fno-7c1d2e3f-aaaa-bbbb-cccc-1234567890ab|customers", attempts=12)]
    screen = io.StringIO()
    console = Console(file=screen, width=width, force_terminal=True, color_system=None)
    console.print(errors_cli._errors_table(entries, with_status=False, width=width))
    shown = screen.getvalue()
    values = ("fno-7c1d2e3f-aaaa-bbbb-cccc-1234567890ab|customers", "customers", "USMF|US-008", "application", "12",
              "2024-05-01 10:00:00", "2024-05-01 10:00:05", "HTTP 400:")
    assert Counter("".join(shown.split())) >= Counter("".join("".join(values).split())), shown  # folded, not cut
    assert all(len(line) <= width for line in shown.splitlines())
    if width >= 160:
        assert len(shown.splitlines()) == 2  # the header and one whole line
        assert all(value in shown for value in values)
