"""A caller that disconnects mid-request is one log line in each simulator, not a traceback, and the simulator
keeps serving."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.fno import FnoSimulator

pytestmark = pytest.mark.integration
LINE = "the caller disconnected before its request was complete"


def _hang_up_mid_body(base_url: str, path: str, headers: dict[str, str]) -> None:
    """Headers announcing 5,000 bytes of body, a few of them, then the connection closed."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=10) as connection:
        head = "".join(f"{name}: {value}\r\n" for name, value in {
            "Host": url.hostname, "Content-Type": "application/json", "Content-Length": "5000", **headers}.items())
        connection.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + b'{"name": "half a bo')
        time.sleep(0.3)


def _wait_for_line(read_log: callable, timeout: float = 10.0) -> str:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read_log()
        if LINE in text:
            time.sleep(0.3)  # whatever else the disconnect logs would follow at once
            return read_log()
        time.sleep(0.1)
    return read_log()


def _assert_one_line(log: str, before: int, path: str) -> None:
    new = log.splitlines()[before:]
    said = [line for line in new if LINE in line]
    assert len(said) == 1 and path in said[0], "\n".join(new)
    assert not any("Traceback" in line or "Exception in ASGI application" in line for line in new), "\n".join(new)


def test_dataverse_logs_a_caller_gone_mid_request_once(dataverse: DataverseSim) -> None:
    read = lambda: dataverse.process.log_path.read_text(errors="replace")  # noqa: E731
    before = len(read().splitlines())
    _hang_up_mid_body(dataverse.url, "/api/data/v9.2/accounts", dataverse.headers())
    _assert_one_line(_wait_for_line(read), before, "/api/data/v9.2/accounts")
    with dataverse.client() as client:  # still serving
        assert client.get("accounts", params={"$top": "1"}).status_code == 200


@pytest.mark.parametrize("path", ["/data/CustomersV3", "/admin/load"])
def test_fno_logs_a_caller_gone_mid_request_once(fno: FnoSimulator, path: str) -> None:
    read = lambda: fno.process.log_path.read_text(errors="replace")  # noqa: E731
    before = len(read().splitlines())
    _hang_up_mid_body(fno.url, path, fno.headers())
    _assert_one_line(_wait_for_line(read), before, path)
    answer = httpx.get(f"{fno.data_url.rstrip('/')}/CustomersV3", params={"$top": "1", "cross-company": "true"},
                       headers=fno.headers(), timeout=30)
    assert answer.status_code == 200
