"""`dualwrite deploy` and `dualwrite health` against fake answers of the routes in functions/deploy.py and
functions/health.py (the answers are built with the engine's own models: core.ops.deploy.DeployReport,
core.ops.health.HealthReport, core.ops.maphealth.MapsHealth)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from core.cli.api import Seams
from core.cli.main import main
from core.ops.deploy import DeployReport
from core.ops.health import DependencyHealth, HealthReport
from core.ops.maphealth import MapHealth, MapsHealth


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


def a_maps_health(**customers: Any) -> dict[str, Any]:
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    rows = [MapHealth(map="customers", mode="running", parked_records=0, open_errors=2, applied=125, failed=1,
                      applied_per_min=12.5, lag_ms_p50=140.2, lag_ms_p95=1830.0, last_applied_at=at, sampled=False),
            MapHealth(map="vendors", mode="catching_up", parked_records=1200, open_errors=0, applied=0, failed=0,
                      applied_per_min=0.0, lag_ms_p50=None, lag_ms_p95=None, last_applied_at=None, sampled=False)]
    rows[0] = rows[0].model_copy(update=customers)
    return MapsHealth(window_minutes=10, at=at, maps=rows).model_dump(mode="json")


def routes(health: httpx.Response, maps: httpx.Response) -> tuple[Seams, list[httpx.Request]]:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return {"/api/health": health, "/api/manage/v1/health": maps}[request.url.path]

    return Seams(transport=httpx.MockTransport(handler)), requests


def test_health_prints_the_version_each_dependency_and_each_maps_figures(capsys):
    seams, requests = routes(httpx.Response(200, json=a_health()), httpx.Response(200, json=a_maps_health()))
    assert main(["health"], obj=seams) == 0
    assert [(r.method, str(r.url)) for r in requests] == [("GET", "http://127.0.0.1:7071/api/health"),
                                                          ("GET", "http://127.0.0.1:7071/api/manage/v1/health")]
    assert requests[1].headers["x-functions-key"] == "local-master-key"
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "healthy, version 0.1.0"
    assert out[1] == "dependency answers latency error"
    assert out[2:4] == ["table storage yes 3.2 ms", "service bus yes 5,000.0 ms"]
    assert out[5] == "maps, over the last 10 min"
    assert out[6] == "map mode parked open errors applied per min failed lag p50 lag p95 last applied"
    assert out[7] == "customers running 0 2 125 12.5 1 140 ms 1,830 ms 2024-05-01 10:00:00"
    assert out[8] == "vendors catching up 1,200 0 0 0.0 0"


def test_figures_read_from_a_sample_say_they_are_at_least_that(capsys):
    seams, _ = routes(httpx.Response(200, json=a_health()),
                      httpx.Response(200, json=a_maps_health(applied=1000, applied_per_min=100.0, sampled=True)))
    assert main(["health"], obj=seams) == 0
    assert "customers running 0 2 1,000+ 100.0+ 1" in " ".join(capsys.readouterr().out.split())


def test_an_engine_without_figures_per_map_shows_the_rest(capsys):
    seams, _ = routes(httpx.Response(200, json=a_health()), httpx.Response(404))
    assert main(["health"], obj=seams) == 0
    captured = capsys.readouterr()
    assert "maps, over" not in captured.out and captured.err == ""


def test_without_the_admin_key_health_still_answers(capsys):
    seams, _ = routes(httpx.Response(200, json=a_health()), httpx.Response(401))
    assert main(["health", "--key", "wrong"], obj=seams) == 0
    captured = capsys.readouterr()
    assert squeezed(captured.out)[0] == "healthy, version 0.1.0"
    assert "no figures per map: HTTP 401 Unauthorized" in " ".join(captured.err.split())


def test_degraded_exits_1_with_the_error(capsys):
    seams, _ = routes(httpx.Response(200, json=a_health("degraded", "no answer within 5 s")),
                      httpx.Response(200, json=a_maps_health()))
    assert main(["health"], obj=seams) == 1
    out = squeezed(capsys.readouterr().out)
    assert out[0] == "degraded, version 0.1.0"
    assert "service bus no 5,000.0 ms no answer within 5 s" in out


@pytest.mark.parametrize("status", [200, 503])
def test_health_json_is_the_answer_with_the_figures_per_map(capsys, status):
    answer, figures = a_health("degraded", "down"), a_maps_health()
    seams, _ = routes(httpx.Response(status, json=answer), httpx.Response(200, json=figures))
    assert main(["health", "--json"], obj=seams) == 1
    assert json.loads(capsys.readouterr().out) == {**answer, "map_health": figures}


def test_health_json_of_an_engine_without_figures_per_map_is_its_answer(capsys):
    answer = a_health()
    seams, _ = routes(httpx.Response(200, json=answer), httpx.Response(405))
    assert main(["health", "--json"], obj=seams) == 0
    assert json.loads(capsys.readouterr().out) == answer


def test_dependencies_added_later_are_shown_too(capsys):
    answer = {**a_health(), "dataverse": {"reachable": True, "latency_ms": 12, "error": None}, "lag_s": 3}
    seams, _ = routes(httpx.Response(200, json=answer), httpx.Response(404))
    assert main(["health"], obj=seams) == 0
    assert "dataverse yes 12.0 ms" in squeezed(capsys.readouterr().out)


def test_an_engine_that_is_not_running(capsys):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert main(["health"], obj=Seams(transport=httpx.MockTransport(refused))) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot reach the engine at http://127.0.0.1:7071" in err and "make run" in err
