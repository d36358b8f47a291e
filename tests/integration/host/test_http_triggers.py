"""The host's HTTP side over real HTTP: route templates, precedence, methods, auth levels, results."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.devhost import RunningHost


@pytest.fixture(scope="module")
def host(devhost) -> RunningHost:
    return devhost("tests.apps.http_app:app")


@pytest.fixture(scope="module")
def client(host: RunningHost):
    with httpx.Client(base_url=host.url, timeout=10) as c:
        yield c


def test_optional_route_parameter_matches_with_and_without_a_value(client: httpx.Client) -> None:
    without = client.get("/api/items")
    with_id = client.get("/api/items/42", params={"q": "x"})
    assert without.status_code == 200 and without.json()["route_params"] == {}
    assert with_id.json() == {
        "function": "items", "method": "GET", "route_params": {"id": "42"}, "params": {"q": "x"}, "body": "",
    }
    assert with_id.headers["x-echo"] == "items"
    assert client.get("/api/items/42/more").status_code == 404


def test_literal_segment_wins_over_a_parameter(client: httpx.Client) -> None:
    assert client.get("/api/items/special").json()["function"] == "special"
    # POST is not accepted by `special`, so the parameter route takes it.
    posted = client.post("/api/items/special", content=b"payload")
    assert posted.json()["function"] == "items" and posted.json()["body"] == "payload"


def test_route_matching_is_case_insensitive_like_asp_net(client: httpx.Client) -> None:
    assert client.get("/API/Items/7").json()["route_params"] == {"id": "7"}


def test_constraint_and_catch_all(client: httpx.Client) -> None:
    assert client.get("/api/numbers/12").json()["route_params"] == {"n": "12"}
    assert client.get("/api/numbers/twelve").status_code == 404
    deep = client.get("/api/files/a/b/c.txt").json()
    assert deep["route_params"] == {"rest": "a/b/c.txt"}
    assert client.get("/api/files").json()["route_params"] == {}


def test_method_not_accepted_is_404_as_in_azure(client: httpx.Client) -> None:
    assert client.put("/api/items/1").status_code == 404
    assert client.delete("/api/files/x").status_code == 404


def test_unknown_route_and_missing_prefix_are_404(client: httpx.Client) -> None:
    assert client.get("/api/nowhere").status_code == 404
    assert client.get("/items/1").status_code == 404


def test_function_level_needs_the_function_or_master_key(client: httpx.Client, host: RunningHost) -> None:
    missing = client.get("/api/secure")
    assert missing.status_code == 401 and missing.content == b""
    assert client.get("/api/secure", params={"code": "wrong"}).status_code == 401
    assert client.get("/api/secure", headers={"x-functions-key": "wrong"}).status_code == 401
    assert client.get("/api/secure", params={"code": host.function_key}).json()["function"] == "secure"
    assert client.delete("/api/secure", headers={"x-functions-key": host.function_key}).status_code == 200
    assert client.get("/api/secure", params={"code": host.master_key}).status_code == 200


def test_admin_level_needs_the_master_key(client: httpx.Client, host: RunningHost) -> None:
    assert client.post("/api/master-only").status_code == 401
    assert client.post("/api/master-only", params={"code": host.function_key}).status_code == 401
    ok = client.post("/api/master-only", headers={"x-functions-key": host.master_key})
    assert ok.status_code == 200 and ok.json()["function"] == "admin_only"


def test_anonymous_level_ignores_keys(client: httpx.Client) -> None:
    assert client.get("/api/items/1", params={"code": "anything"}).status_code == 200


def test_string_results_unhandled_errors_and_default_route(client: httpx.Client, host: RunningHost) -> None:
    text = client.get("/api/plain")
    assert text.status_code == 200 and text.text == "just text"
    assert text.headers["content-type"].startswith("text/plain")
    failed = client.get("/api/boom")
    assert failed.status_code == 500 and failed.content == b""
    named = client.get("/api/default_route").json()
    assert named["function"] == "default_route" and len(named["id"]) == 36
    log = host.log()
    assert "function=boom trigger=httpTrigger" in log and "outcome=failed" in log
    assert "RuntimeError: deliberate failure" in log
    assert "function=plain trigger=httpTrigger" in log and "outcome=succeeded" in log
