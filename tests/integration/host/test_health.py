"""GET /api/health through the local host: 200 JSON with version and dependency reachability."""

from __future__ import annotations

import httpx

from core import __version__
from devstack.processes import free_port


def test_health_reports_table_storage_reachable_and_a_dead_service_bus(devhost, azurite: str) -> None:
    dead_bus = f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=R;SharedAccessKey=K;UseDevelopmentEmulator=true"
    host = devhost(TABLE_STORAGE_CONNECTION=azurite, SERVICEBUS_CONNECTION=dead_bus)
    response = httpx.get(f"{host.url}/api/health", timeout=30)  # anonymous: no key
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["version"] == __version__
    assert body["status"] == "degraded"
    assert body["table_storage"]["reachable"] is True and body["table_storage"]["error"] is None
    assert body["service_bus"]["reachable"] is False and "ServiceBusConnectionError" in body["service_bus"]["error"]
    assert "SharedAccessKey=K" not in response.text


def test_health_with_invalid_settings_is_a_problem_naming_them(devhost) -> None:
    host = devhost(DATAVERSE_URL="not a url")
    response = httpx.get(f"{host.url}/api/health", timeout=30)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["invalid_settings"] == ["DATAVERSE_URL"]
