"""classify and the retry loop of ODataHttp, through httpx.MockTransport (the documented I/O seam)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from core.connectors import (
    AuthFailed,
    ConflictError,
    DataverseClient,
    LocalTokens,
    NotFound,
    ThrottledError,
    TransientError,
    ValidationFailed,
    classify,
)
from core.connectors.http import ODataHttp, error_for, retry_after

URL = "https://contoso.crm.dynamics.com"


def answer(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("PATCH", f"{URL}/api/data/v9.2/accounts(1)")
    content = json.dumps(body).encode() if body is not None else b""
    return httpx.Response(status, content=content, headers=headers, request=request)


@pytest.mark.parametrize(("status", "action"), [
    (200, "ok"), (201, "ok"), (204, "ok"), (304, "ok"),
    (400, "fail"), (405, "fail"), (409, "fail"), (413, "fail"), (422, "fail"), (501, "fail"),
    (401, "auth"), (403, "auth"), (404, "not_found"), (412, "conflict"), (429, "rate_limited"),
    (408, "retry"), (502, "retry"), (503, "retry"), (504, "retry"), (500, "fail"),
])
def test_classify_by_status(status: int, action: str) -> None:
    assert classify(answer(status)) == action


def test_classify_dataverse_busy_500_is_transient() -> None:
    assert classify(answer(500, {"error": {"code": "0x80044150", "message": "Generic SQL error"}})) == "retry"
    assert classify(answer(500, {"error": {"code": "0x80040265", "message": "plug-in threw"}})) == "fail"


@pytest.mark.parametrize(("status", "kind"), [
    (400, ValidationFailed), (422, ValidationFailed), (401, AuthFailed), (403, AuthFailed), (404, NotFound),
    (412, ConflictError), (503, TransientError), (429, ThrottledError),
])
def test_error_types(status: int, kind: type[Exception]) -> None:
    body = {"error": {"code": "0x1", "message": "top", "innererror": {"message": "infolog"}}}
    error = error_for(answer(status, body))
    assert type(error) is kind
    assert (error.status, error.code, error.message, error.method) == (status, "0x1", "infolog", "PATCH")
    assert json.loads(error.text)["error"]["message"] == "top"


def test_error_text_is_never_truncated_and_non_json_bodies_survive() -> None:
    long_message = "x" * 50_000
    error = error_for(answer(400, {"error": {"code": "", "message": long_message}}))
    assert error.message == long_message and long_message in error.text
    plain = error_for(httpx.Response(502, text="<html>Bad gateway</html>", request=httpx.Request("GET", URL)))
    assert isinstance(plain, TransientError) and plain.text == "<html>Bad gateway</html>"


def test_retry_after_defaults_to_one_second() -> None:
    assert retry_after(answer(429, headers={"Retry-After": "7"})) == 7.0
    assert retry_after(answer(429)) == 1.0
    assert retry_after(answer(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 1.0


def scripted(*statuses: int, retry_after: str | None = None) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses[min(len(seen), len(statuses)) - 1]
        headers = {"Retry-After": retry_after} if status == 429 and retry_after else None
        body = {"error": {"code": "", "message": f"answer {status}"}} if status >= 400 else None
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handle), seen


async def test_503_twice_then_success() -> None:
    transport, seen = scripted(503, 503, 204)
    async with DataverseClient(URL, LocalTokens(), transport=transport) as dv:
        await dv.update("accounts", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", {"name": "x"})
        assert dv.stats.retried == 2
    assert len(seen) == 3
    assert seen[0].headers["If-Match"] == "*" and seen[0].headers["Authorization"].startswith("Bearer ")


async def test_503_forever_gives_up_after_max_retries() -> None:
    transport, seen = scripted(503)
    async with DataverseClient(URL, LocalTokens(), transport=transport, max_retries=3) as dv:
        with pytest.raises(TransientError) as caught:
            await dv.update("accounts", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", {"name": "x"})
    assert len(seen) == 4 and caught.value.status == 503 and caught.value.message == "answer 503"


async def test_permanent_errors_are_not_retried() -> None:
    transport, seen = scripted(400)
    async with ODataHttp(URL, LocalTokens(), transport=transport) as http:
        with pytest.raises(ValidationFailed):
            await http.request("POST", "accounts", body={"name": "x"})
    assert len(seen) == 1


async def test_throttling_waits_retry_after_and_gives_up_past_the_total_budget() -> None:
    transport, seen = scripted(429, 429, 200, retry_after="0")
    async with ODataHttp(URL, LocalTokens(), transport=transport) as http:
        assert (await http.request("GET", "accounts")).status_code == 200
        assert http.stats.throttled == 2 and http.stats.retried == 0
    transport, seen = scripted(429, retry_after="5")
    async with ODataHttp(URL, LocalTokens(), transport=transport, max_total_wait=0.5) as http:
        with pytest.raises(ThrottledError) as caught:
            await http.request("GET", "accounts")
    assert caught.value.retry_after == 5.0 and len(seen) == 1


async def test_connection_errors_are_retried_then_transient(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    caplog.set_level(logging.INFO, logger="core.connectors.http")
    async with ODataHttp(URL, LocalTokens(), transport=httpx.MockTransport(refuse), max_retries=2,
                         backoff_base=0.01) as http:
        with pytest.raises(TransientError, match="ConnectError"):
            await http.request("GET", "accounts", params={"code": "secret-key"})
    assert calls == 3
    assert "retry 1/2" in caplog.text
    assert "Bearer" not in caplog.text and "secret-key" not in caplog.text


async def test_params_merge_with_the_urls_own_query() -> None:
    transport, seen = scripted(200)
    async with ODataHttp(URL, LocalTokens(), transport=transport) as http:
        await http.request("GET", "CustomersV3(x='1')?cross-company=true", params={"$select": "A"})
    assert seen[0].url.params["cross-company"] == "true" and seen[0].url.params["$select"] == "A"


async def test_a_post_that_may_have_landed_is_not_sent_twice() -> None:
    calls = 0

    def time_out(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("no answer in time", request=request)

    async with ODataHttp(URL, LocalTokens(), transport=httpx.MockTransport(time_out), backoff_base=0.01) as http:
        with pytest.raises(TransientError, match="ReadTimeout"):
            await http.request("POST", "accounts", body={"name": "x"})
        assert calls == 1
        with pytest.raises(TransientError, match="ReadTimeout"):
            await http.request("PATCH", "accounts(1)", body={"name": "x"})
        assert calls == 1 + 1 + http.max_retries  # idempotent: retried


async def test_patience_caps_the_retries_of_calls_made_inside_it() -> None:
    from core.connectors.http import patience

    calls: list[int] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, json={"error": {"message": "down"}})

    client = ODataHttp(URL, LocalTokens(), transport=httpx.MockTransport(down), backoff_base=0.001)
    with patience(max_retries=1, max_total_wait=2.0), pytest.raises(TransientError):
        await client.request("GET", "accounts")
    assert len(calls) == 2  # one try, one retry: the caller retries later on its own
    calls.clear()
    with pytest.raises(TransientError):
        await client.request("GET", "accounts")
    assert len(calls) == 5  # outside it, the client's own policy (4 retries)
