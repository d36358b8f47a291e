"""Every route of the app that is not anonymous refuses a caller without the right key (401), on a running host.

The routes come from the app itself (function_app.py's HTTP triggers), so a route added later is covered
without editing this file. The keys are tried where Azure takes them: the x-functions-key header and the
`code` query parameter. Admin routes also refuse the function key (only the master key opens them).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.devhost import RunningHost, fresh_function_app

# Route parameters filled with plausible values: a refusal must not depend on the route matching by accident.
_SAMPLE = {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "map": "customers", "action": "pause", "revision": "1",
           "name": "application-errors", "path": "index.html"}


def _concrete(template: str) -> str:
    return re.sub(r"\{\*?(\w+)[^}]*\}", lambda m: _SAMPLE.get(m.group(1), "x"), template)


def protected_routes() -> list[tuple[str, str, str]]:
    """(method, path under /api/, auth level) of every HTTP trigger that is not anonymous."""
    found = []
    for function in fresh_function_app().get_functions():
        binding = function.get_trigger()
        route = getattr(binding, "route", None)
        if route is None:
            continue
        level = str(getattr(binding.auth_level, "value", binding.auth_level)).lower()
        if level == "anonymous":
            continue
        for method in binding.methods or ["GET", "POST"]:
            found.append((str(getattr(method, "value", method)).upper(), _concrete(route), level))
    return sorted(found)


ROUTES = protected_routes()


def test_the_app_has_protected_routes_of_both_levels() -> None:
    levels = {level for _, _, level in ROUTES}
    assert levels == {"function", "admin"}, levels
    assert ("POST", "dataverse/webhook", "function") in ROUTES and ("POST", "fno/events", "function") in ROUTES


@pytest.fixture(scope="module")
def host(devhost: Callable[..., RunningHost]) -> RunningHost:
    # No Azurite or Service Bus: a refused call never reaches the function, so nothing behind it is needed.
    return devhost()


@pytest.mark.integration
@pytest.mark.parametrize(("method", "path", "level"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_missing_or_wrong_key_is_refused(host: RunningHost, method: str, path: str, level: str) -> None:
    url = f"{host.url}/api/{path}"
    body = b'{"marker": "not for you"}'
    wrong = [host.function_key + "x", host.master_key[:-1], "", host.master_key + "0", host.master_key.upper()]
    if level == "admin":
        wrong.append(host.function_key)  # the function key does not open an admin route
    with httpx.Client(timeout=30) as client:
        answers = {"no key": client.request(method, url, content=body).status_code}
        for index, key in enumerate(wrong):
            answers[f"header {index}"] = client.request(method, url, content=body,
                                                        headers={"x-functions-key": key}).status_code
            answers[f"code {index}"] = client.request(method, url, content=body, params={"code": key}).status_code
    assert set(answers.values()) == {401}, answers


@pytest.mark.integration
def test_the_right_key_opens_them(host: RunningHost) -> None:
    """The refusals above are the keys' doing, not the routes': the right key gets past the host."""
    with httpx.Client(base_url=f"{host.url}/api/", timeout=30) as client:
        assert client.get("maps", headers={"x-functions-key": host.function_key}).status_code == 200
        assert client.get("maps", params={"code": host.master_key}).status_code == 200
        openapi = client.get("manage/v1/openapi.json", headers={"x-functions-key": host.master_key})
        assert openapi.status_code == 200
