"""Index a Python v2 function app the way the Functions host and Python worker do, and refuse
what they would refuse, naming the function.

The app object's `get_functions()` may be called only once per app instance (a second call
raises about duplicate names), so `index_app` calls it once and the host keeps the result.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import azure.functions as func

from devstack.host.ncrontab import Schedule, ScheduleError, parse_schedule
from devstack.host.routes import RouteTemplate, RouteTemplateError, compile_route

AuthLevel = Literal["anonymous", "function", "admin"]
_ALL_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"})
_SETTING_REF = re.compile(r"%([^%]+)%")

SUPPORTED_TRIGGERS = ("httpTrigger", "serviceBusTrigger", "timerTrigger")
SUPPORTED_OUTPUTS = ("http", "serviceBus")


RESERVED_ROUTE_PREFIXES = ("admin", "runtime")


class IndexingError(Exception):
    """The app cannot be hosted; the message names the function and what is wrong."""


@dataclass(frozen=True)
class Binding:
    name: str
    type: str
    direction: Literal["in", "out", "inout"]
    raw: dict[str, Any]


@dataclass(frozen=True)
class HttpTrigger:
    route: RouteTemplate
    methods: frozenset[str]
    auth_level: AuthLevel


@dataclass(frozen=True)
class ServiceBusTrigger:
    queue_name: str
    connection: str  # the app setting that holds the connection string
    sessions: bool
    many: bool


@dataclass(frozen=True)
class TimerTrigger:
    schedule: Schedule
    run_on_startup: bool


@dataclass(frozen=True)
class ServiceBusOutput:
    name: str
    queue_name: str
    connection: str


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    user_function: Any = field(repr=False)
    is_async: bool
    trigger_binding: Binding
    trigger: HttpTrigger | ServiceBusTrigger | TimerTrigger
    outputs: tuple[Binding, ...]
    servicebus_outputs: tuple[ServiceBusOutput, ...]  # resolved once here, not per invocation
    context_param: str | None
    param_types: dict[str, Any] = field(repr=False)

    @property
    def trigger_type(self) -> str:
        return self.trigger_binding.type


def load_app(target: str) -> func.FunctionApp:
    """Import `module:attribute` (default attribute `app`) from the current directory."""
    module_name, _, attribute = target.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise IndexingError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, func.FunctionApp):
        raise IndexingError(f"{target!r} is not an azure.functions.FunctionApp")
    return app


def index_app(app: func.FunctionApp) -> list[FunctionSpec]:
    """Validate every function of the app and describe how to run it. Calls get_functions() once."""
    try:
        functions = app.get_functions()
    except Exception as exc:  # the library's own checks (duplicate names, misuse of decorators)
        raise IndexingError(f"the app's functions cannot be indexed: {exc}") from exc
    specs = [_index_function(f) for f in functions]
    _check_unique_routes(specs)
    return specs


def resolve_setting_refs(function_name: str, text: str) -> str:
    """Replace `%NAME%` with app setting NAME, as binding expressions do."""

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in os.environ:
            raise IndexingError(f"function {function_name!r}: app setting {name!r} referenced as %{name}% is not set")
        return os.environ[name]

    return _SETTING_REF.sub(replace, text)


def _index_function(function: Any) -> FunctionSpec:
    name = function.get_function_name()
    bindings = [_binding(json.loads(raw)) for raw in function.get_raw_bindings()]
    user_function = function.get_user_function()
    triggers = [b for b in bindings if b.type.endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(f"function {name!r}: needs exactly one trigger binding, found {len(triggers)}")
    trigger_binding = triggers[0]
    if trigger_binding.type not in SUPPORTED_TRIGGERS:
        raise IndexingError(
            f"function {name!r}: trigger {trigger_binding.type!r} is not supported by the local host "
            f"(supported: {', '.join(SUPPORTED_TRIGGERS)})"
        )
    for binding in bindings:
        if binding is not trigger_binding and binding.direction == "in":
            raise IndexingError(f"function {name!r}: input binding {binding.type!r} is not supported by the local host")
        if binding.direction == "out" and binding.type not in SUPPORTED_OUTPUTS:
            raise IndexingError(
                f"function {name!r}: output binding {binding.type!r} ({binding.name!r}) "
                "is not supported by the local host"
            )

    signature = inspect.signature(user_function)
    try:
        hints = typing.get_type_hints(user_function)
    except Exception:  # unresolvable annotations: fall back to the raw ones
        hints = {p.name: p.annotation for p in signature.parameters.values()}
    context_param = next(
        (p for p in signature.parameters if p == "context" or hints.get(p) is func.Context), None
    )
    params = [p for p in signature.parameters if p != context_param]
    bound = {b.name for b in bindings if b.name != "$return"}
    unbound = [p for p in params if p not in bound]
    if unbound:
        raise IndexingError(
            f"function {name!r}: parameter(s) {', '.join(map(repr, unbound))} declared in Python "
            f"are not bound to any binding"
        )
    missing = sorted(bound - set(params))
    if missing:
        raise IndexingError(
            f"function {name!r}: binding(s) {', '.join(map(repr, missing))} have no parameter of that name in Python"
        )
    for binding in bindings:
        if binding.name == "$return":
            continue
        annotation = hints.get(binding.name)
        is_out_type = typing.get_origin(annotation) is func.Out or annotation is func.Out
        if binding.direction == "out" and annotation is not None and not is_out_type:
            raise IndexingError(
                f"function {name!r}: binding {binding.name!r} is an output binding, so its Python type "
                f"annotation must be azure.functions.Out[...]"
            )
        if binding.direction == "in" and is_out_type:
            raise IndexingError(f"function {name!r}: binding {binding.name!r} is an input but annotated as Out[...]")
        if isinstance(annotation, types.GenericAlias) or (
                isinstance(annotation, str) and re.match(r"\s*(list|dict|tuple|set|frozenset)\[", annotation)):
            # Microsoft's Python worker refuses a PEP 585 generic (`list[...]`) as "invalid non-type annotation" and
            # does not load the function in Azure (tests/infra/test_worker_indexing.py): refuse it here as well.
            raise IndexingError(f"function {name!r}: binding {binding.name!r} is annotated {annotation}; the Python "
                                f"worker refuses that form: write typing.List[...]")

    return FunctionSpec(
        name=name,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        trigger_binding=trigger_binding,
        trigger=_trigger(name, trigger_binding),
        outputs=tuple(b for b in bindings if b.direction == "out"),
        servicebus_outputs=tuple(
            ServiceBusOutput(b.name, resolve_setting_refs(name, b.raw["queueName"]), b.raw.get("connection", ""))
            for b in bindings
            if b.direction == "out" and b.type == "serviceBus"
        ),
        context_param=context_param,
        param_types=hints,
    )


def _binding(raw: dict[str, Any]) -> Binding:
    direction = str(raw.get("direction", "IN")).lower()
    return Binding(name=raw["name"], type=raw["type"], direction=direction, raw=raw)  # type: ignore[arg-type]


def _trigger(name: str, binding: Binding) -> HttpTrigger | ServiceBusTrigger | TimerTrigger:
    raw = binding.raw
    if binding.type == "httpTrigger":
        template = raw.get("route") or name
        reserved = next((word for word in RESERVED_ROUTE_PREFIXES if template.strip("/").lower().startswith(word)),
                        None)
        if reserved is not None:
            # The Azure host refuses these ("The specified route conflicts with one or more built in routes").
            raise IndexingError(f"function {name!r}: The specified route conflicts with one or more built in routes. "
                                f"Route {template!r} starts with {reserved!r}, which the Functions host reserves for "
                                "its own API; it would not load in Azure (use e.g. manage/...)")
        try:
            route = compile_route(template)
        except RouteTemplateError as exc:
            raise IndexingError(f"function {name!r}: {exc}") from None
        methods = frozenset(m.upper() for m in raw.get("methods") or ()) or _ALL_METHODS
        level = str(raw.get("authLevel", "FUNCTION")).lower()
        if level not in ("anonymous", "function", "admin"):
            raise IndexingError(f"function {name!r}: unknown authLevel {raw.get('authLevel')!r}")
        return HttpTrigger(route, methods, level)  # type: ignore[arg-type]
    if binding.type == "serviceBusTrigger":
        if "topicName" in raw:
            raise IndexingError(f"function {name!r}: topic triggers are not supported by the local host yet")
        connection = raw.get("connection") or "AzureWebJobsServiceBus"
        return ServiceBusTrigger(
            queue_name=resolve_setting_refs(name, raw["queueName"]),
            connection=connection,
            sessions=bool(raw.get("isSessionsEnabled", False)),
            many=str(raw.get("cardinality", "ONE")).upper() == "MANY",
        )
    try:
        schedule = parse_schedule(resolve_setting_refs(name, raw["schedule"]))
    except ScheduleError as exc:
        raise IndexingError(f"function {name!r}: {exc}") from None
    return TimerTrigger(schedule, bool(raw.get("runOnStartup", False)))


def _check_unique_routes(specs: list[FunctionSpec]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        if not isinstance(spec.trigger, HttpTrigger):
            continue
        for method in spec.trigger.methods:
            key = (spec.trigger.route.template.strip("/").lower(), method)
            if key in seen:
                raise IndexingError(
                    f"function {spec.name!r}: route {spec.trigger.route.template!r} {method} is already "
                    f"served by function {seen[key]!r}"
                )
            seen[key] = spec.name
