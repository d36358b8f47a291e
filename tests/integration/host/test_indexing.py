"""What the real host refuses, the local host refuses too: loudly, naming the function, exit non-zero."""

from __future__ import annotations

import subprocess

import pytest

from devstack.host.indexing import IndexingError, index_app
from devstack.processes import ROOT, free_port, python_module
from tests.fixtures.devhost import fresh_function_app, write_settings


def _run_host(app: str, tmp_path) -> subprocess.CompletedProcess[str]:
    settings = write_settings(tmp_path / "local.settings.json")
    argv = python_module("devstack.host", "--port", str(free_port()), "--app", app, "--settings", str(settings))
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_parameter_bound_to_nothing_stops_the_host_naming_the_function(tmp_path) -> None:
    result = _run_host("tests.apps.unbound_param:app", tmp_path)
    assert result.returncode != 0
    assert "function 'broken_function'" in result.stderr
    assert "'extra'" in result.stderr and "not bound to any binding" in result.stderr


def test_an_app_that_does_not_import_stops_the_host(tmp_path) -> None:
    result = _run_host("tests.apps.no_such_module:app", tmp_path)
    assert result.returncode != 0 and "cannot import 'tests.apps.no_such_module'" in result.stderr


def _app_with(decorate) -> object:
    import azure.functions as func

    app = func.FunctionApp()
    decorate(app, func)
    return app


@pytest.mark.parametrize(
    ("decorate", "expected"),
    [
        (
            lambda app, func: app.timer_trigger(schedule="* * * * *", arg_name="t")(lambda t: None),
            "expected six fields",
        ),
        (
            lambda app, func: app.route(route="a/{x?}/b")(lambda req: None),
            "optional parameter 'x' must be the whole last segment",
        ),
        (
            lambda app, func: app.service_bus_queue_trigger(arg_name="m", queue_name="%MISSING_QUEUE%", connection="C")(
                lambda m: None
            ),
            "app setting 'MISSING_QUEUE'",
        ),
        (
            lambda app, func: app.blob_trigger(arg_name="b", path="c/{name}", connection="S")(lambda b: None),
            "trigger 'blobTrigger' is not supported",
        ),
        (
            lambda app, func: app.route(route="admin/errors")(lambda req: None),
            "The specified route conflicts with one or more built in routes. Route 'admin/errors' starts with "
            "'admin', which the Functions host reserves",
        ),
        (
            lambda app, func: app.route(route="Runtime/status")(lambda req: None),
            "starts with 'runtime', which the Functions host reserves",
        ),
    ],
    ids=["bad-schedule", "bad-route", "unset-setting", "unsupported-trigger", "reserved-admin", "reserved-runtime"],
)
def test_refusals_name_the_function_and_the_problem(decorate, expected: str) -> None:
    with pytest.raises(IndexingError) as refused:
        index_app(_app_with(decorate))
    assert "function '<lambda>'" in str(refused.value) and expected in str(refused.value)


def test_output_binding_must_be_annotated_as_out() -> None:
    import azure.functions as func

    app = func.FunctionApp()

    @app.route(route="x")
    @app.service_bus_queue_output(arg_name="out", queue_name="q", connection="C")
    def sends(req: func.HttpRequest, out: str) -> str:
        return "x"

    with pytest.raises(IndexingError, match=r"function 'sends': binding 'out' is an output binding"):
        index_app(app)


def test_a_pep_585_list_on_a_binding_is_refused_as_the_python_worker_refuses_it() -> None:
    import typing

    import azure.functions as func

    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="batch", queue_name="q", connection="C", cardinality=func.Cardinality.MANY)
    def takes(batch: list[func.ServiceBusMessage]) -> None:
        return None

    with pytest.raises(IndexingError, match=r"function 'takes': binding 'batch' is annotated list\["):
        index_app(app)

    fixed = func.FunctionApp()

    @fixed.service_bus_queue_trigger(arg_name="batch", queue_name="q", connection="C",
                                     cardinality=func.Cardinality.MANY)
    def takes_list(batch: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        return None

    assert [spec.name for spec in index_app(fixed)] == ["takes_list"]


def test_the_same_route_and_method_twice_is_refused() -> None:
    import azure.functions as func

    app = func.FunctionApp()

    @app.route(route="same", methods=["GET"])
    def first(req: func.HttpRequest) -> str:
        return "1"

    @app.route(route="Same/", methods=["POST", "GET"])
    def second(req: func.HttpRequest) -> str:
        return "2"

    refused = r"function 'second': route 'Same/' GET is already served by function 'first'"
    with pytest.raises(IndexingError, match=refused):
        index_app(app)


def test_get_functions_is_called_once_per_app() -> None:
    import azure.functions as func

    app = func.FunctionApp()
    app.route(route="one")(lambda req: None)
    assert [s.name for s in index_app(app)] == ["<lambda>"]
    # The library refuses a second call on the same app instance; the host must never make one.
    with pytest.raises(IndexingError, match="cannot be indexed"):
        index_app(app)


def test_the_apps_own_routes_all_pass_as_azure_would_take_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHANGES_QUEUE", "FNO_EVENTS_QUEUE", "SYNC_PAGES_QUEUE"):  # the %SETTING% names the triggers use
        monkeypatch.setenv(name, name.lower())
    specs = index_app(fresh_function_app())
    routes = [s.trigger.route.template for s in specs if hasattr(s.trigger, "route")]
    assert "manage/v1/errors" in routes and "dataverse/webhook" in routes
    assert not [r for r in routes if r.strip("/").lower().startswith(("admin", "runtime"))]
