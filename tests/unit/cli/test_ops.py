"""`dualwrite deploy` and `dualwrite health` against fake answers of the routes in functions/deploy.py and
functions/health.py (the report shapes come from core.ops.deploy.DeployReport and core.ops.health.HealthReport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from core.cli.api import Seams
from core.cli.main import main
from core.ops.deploy import DeployReport
from core.ops.health import DependencyHealth, HealthReport


def serving(*answers: httpx.Response) -> tuple[Seams, list[httpx.Request]]:
    requests: list[httpx.Request] = []
    left = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return left.pop(0)

    return Seams(transport=httpx.MockTransport(handler)), requests


def a_report(*items: tuple[str, str, str, str]) -> dict[str, Any]:
    report = DeployReport()
    for kind, name, status, detail in items:
        report.add(kind, name, status, detail)  # type: ignore[arg-type]
    return report.to_json()


def a_health(status: str = "healthy", bus_error: str | None = None) -> dict[str, Any]:
    return HealthReport(
        status=status, version="0.1.0",  # type: ignore[arg-type]
        table_storage=DependencyHealth(reachable=True, latency_ms=3.25),
        service_bus=DependencyHealth(reachable=bus_error is None, latency_ms=5000.0, error=bus_error),
    ).model_dump(mode="json")


def squeezed(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


# --- deploy ---------------------------------------------------------------------------------------------


def test_deploy_posts_and_prints_the_report(capsys):
    report = a_report(("dataverse_endpoint", "dw-oss ingest", "unchanged", ""),
                      ("dataverse_step", "dw-oss: Update of account", "created", "filter: name,telephone1"),
                      ("fno_activation", "CustomersV3.Update", "unchanged", ""))
    seams, requests = serving(httpx.Response(200, json=report))
    assert main(["deploy"], obj=seams) == 0
    [request] = requests
    assert (request.method, str(request.url)) == ("POST", "http://127.0.0.1:7071/api/manage/v1/deploy")
    assert request.headers["x-functions-key"] == "local-master-key"
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "what name status detail"
    assert out[1] == "Dataverse webhook endpoint dw-oss ingest unchanged"
    assert out[2] == "Dataverse step dw-oss: Update of account created filter: name,telephone1"
    assert out[3] == "F&O data event CustomersV3.Update unchanged"
    assert out[-1] == "deployed: 1 created, 2 unchanged"


def test_a_failed_item_exits_1_with_the_report(capsys):
    report = a_report(("fno_activation", "CustomersV3.Create", "failed", "the endpoint did not answer the test"),
                      ("dataverse_step", "dw-oss: Create of account", "unchanged", ""))
    seams, _ = serving(httpx.Response(502, json=report))
    assert main(["deploy"], obj=seams) == 1
    out = squeezed(capsys.readouterr().out)
    assert "F&O data event CustomersV3.Create failed the endpoint did not answer the test" in out
    assert out[-1] == "deployment failed: 1 unchanged, 1 failed"


def test_deploy_json_is_the_report_whatever_the_outcome(capsys):
    report = a_report(("fno_endpoint", "dw-oss-ingest", "failed", "refused"))
    seams, _ = serving(httpx.Response(502, json=report))
    assert main(["deploy", "--json"], obj=seams) == 1
    assert json.loads(capsys.readouterr().out) == report


def test_deploy_not_configured_exits_1_saying_what_to_set(capsys):
    seams, _ = serving(httpx.Response(409, json={"title": "Deployment not configured",
                                                 "detail": "set APP_URL and INGEST_KEY to deploy",
                                                 "missing_settings": ["APP_URL", "INGEST_KEY"]}))
    assert main(["deploy"], obj=seams) == 1
    assert capsys.readouterr().err.strip() == "Deployment not configured: set APP_URL and INGEST_KEY to deploy"


def test_a_502_that_is_no_report_is_an_error(capsys):
    seams, _ = serving(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert main(["deploy"], obj=seams) == 1
    assert "not JSON" in capsys.readouterr().err


def test_nothing_to_deploy(capsys):
    seams, _ = serving(httpx.Response(200, json=a_report()))
    assert main(["deploy"], obj=seams) == 0
    assert capsys.readouterr().out.strip() == "deployed: nothing to register"


# --- health ---------------------------------------------------------------------------------------------


def test_health_prints_the_version_and_each_dependency(capsys):
    seams, requests = serving(httpx.Response(200, json=a_health()))
    assert main(["health"], obj=seams) == 0
    assert (requests[0].method, str(requests[0].url)) == ("GET", "http://127.0.0.1:7071/api/health")
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "healthy, version 0.1.0"
    assert out[1] == "dependency answers latency error"
    assert out[2:] == ["table storage yes 3.2 ms", "service bus yes 5,000.0 ms"]


def test_degraded_exits_1_with_the_error(capsys):
    seams, _ = serving(httpx.Response(200, json=a_health("degraded", "no answer within 5 s")))
    assert main(["health"], obj=seams) == 1
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "degraded, version 0.1.0"
    assert "service bus no 5,000.0 ms no answer within 5 s" in out


@pytest.mark.parametrize("status", [200, 503])
def test_health_json_is_the_answer(capsys, status):
    answer = a_health("degraded", "down")
    seams, _ = serving(httpx.Response(status, json=answer))
    assert main(["health", "--json"], obj=seams) == 1
    assert json.loads(capsys.readouterr().out) == answer


def test_dependencies_added_later_are_shown_too(capsys):
    answer = {**a_health(), "dataverse": {"reachable": True, "latency_ms": 12, "error": None}, "lag_s": 3}
    seams, _ = serving(httpx.Response(200, json=answer))
    assert main(["health"], obj=seams) == 0
    assert "dataverse yes 12.0 ms" in squeezed(capsys.readouterr().out)


def test_an_engine_that_is_not_running(capsys):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert main(["health"], obj=Seams(transport=httpx.MockTransport(refused))) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot reach the engine at http://127.0.0.1:7071" in err and "make run" in err
