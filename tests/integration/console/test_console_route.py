"""The console page and its assets through the local host: anonymous, the right content types and security
headers, asset links that work with and without a trailing slash, 404 for anything else, nothing served from
outside functions/console_static/ however the path is spelled."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from functions.console import STATIC, asset
from tests.fixtures.devhost import RunningHost, fresh_function_app


@pytest.fixture(scope="module")
def host(devhost) -> RunningHost:
    return devhost("tests.integration.console.app:app")


@pytest.fixture(scope="module")
def client(host: RunningHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.url, timeout=10) as c:
        yield c


def raw_get(host: RunningHost, target: str) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (HTTP clients normalise '..' away before sending)."""
    where = urlsplit(host.url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {where.netloc}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("path", ["/api/console", "/api/console/", "/api/console/index.html"])
def test_the_page_is_served_anonymously_with_absolute_asset_links(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert '<script src="/api/console/app.js" defer></script>' in page
    assert '<link rel="stylesheet" href="/api/console/style.css">' in page
    assert '<meta name="dw-api" content="/api/">' in page and "{{" not in page
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"  # the key is in the page's address
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_key_in_the_address_changes_nothing_on_the_server(client: httpx.Client) -> None:
    response = client.get("/api/console", params={"code": "local-master-key"})
    assert response.status_code == 200 and "local-master-key" not in response.text


@pytest.mark.parametrize(("name", "content_type"), [
    ("app.js", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("favicon.svg", "image/svg+xml"),
    ("meta.json", "application/json"),
])
def test_assets_have_their_content_types(client: httpx.Client, name: str, content_type: str) -> None:
    response = client.get(f"/api/console/{name}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    if name != "meta.json":
        assert response.content == (STATIC / name).read_bytes()


def test_meta_tells_the_page_the_moves_each_mode_allows(client: httpx.Client) -> None:
    meta = client.get("/api/console/meta.json").json()
    assert meta["modes"]["running"] == {"label": "running", "actions": ["pause", "stop"]}
    assert meta["modes"]["paused"]["actions"] == ["resume", "stop"]
    assert meta["modes"]["stopped"]["actions"] == ["start"]
    assert "applied" in meta["outcomes"] and "throttled" in meta["categories"] and "open" in meta["statuses"]


def test_an_unchanged_asset_is_a_304(client: httpx.Client) -> None:
    first = client.get("/api/console/style.css")
    again = client.get("/api/console/style.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", ["nothing.js", "app.js.map", "README.md", "sub/app.js", "index.htm"])
def test_an_unknown_asset_is_a_404_problem(client: httpx.Client, path: str) -> None:
    response = client.get(f"/api/console/{path}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_only_get_is_served(client: httpx.Client) -> None:
    assert client.post("/api/console/app.js").status_code == 404


@pytest.mark.parametrize("target", [
    "/api/console/../console.py",
    "/api/console/%2e%2e/console.py",
    "/api/console/%2E%2E%2Fconsole.py",
    "/api/console/..%2F..%2Ffunction_app.py",
    "/api/console/%2e%2e%2f%2e%2e%2fhost.json",
    "/api/console/..%5C..%5Chost.json",
    "/api/console/%2Fetc%2Fpasswd",
])
def test_no_path_reaches_outside_the_static_folder(host: RunningHost, target: str) -> None:
    status, body = raw_get(host, target)
    assert status == 404, (target, body[:200])
    assert b"import" not in body and b"root:" not in body and b"extensions" not in body


@pytest.mark.parametrize("path", [
    "../console.py", "../../function_app.py", "./app.js", "sub/../app.js", "/etc/passwd", "..\\console.py",
    ".hidden", "app.js\x00.css", "",
])
def test_asset_refuses_what_is_not_a_plain_file_of_the_folder(path: str) -> None:
    assert asset(path) is None


def test_asset_finds_the_folder_s_files() -> None:
    assert asset("app.js") == (STATIC / "app.js").resolve()


def test_the_app_serves_the_console_anonymously_on_a_route_azure_accepts() -> None:
    [console] = [f for f in fresh_function_app().get_functions() if f.get_function_name() == "console"]
    trigger = console.get_trigger()
    assert trigger.route == "console/{*path}" and trigger.auth_level.name == "ANONYMOUS"
    assert not trigger.route.lower().startswith(("admin", "runtime"))
