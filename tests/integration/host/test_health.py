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


def test_the_maps_route_needs_the_function_key_and_lists_the_shipped_maps(devhost) -> None:
    host = devhost()
    url = f"{host.url}/api/maps"
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(url, params={"code": "wrong"}, timeout=30).status_code == 401
    response = httpx.get(url, headers={"x-functions-key": host.function_key}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True and body["problems"] == []
    names = {m["name"] for m in body["maps"]}
    assert {"customers", "legal-entities", "vendors"} <= names
    # Companies come before what lives in them.
    assert body["order"].index("legal-entities") < body["order"].index("customers")
