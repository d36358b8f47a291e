"""Traces and metric instruments (OpenTelemetry): one trace per change from ingest through the queue to the write.

Spans, and where they are made:
- `ingest` (producer; functions/ingest.py): parse and enqueue of one webhook or F&O event payload. Each queued
  message carries the trace context in its application properties (`traceparent`, `tracestate`, and
  `Diagnostic-Id`, the Azure SDK's name for it, which the Functions host's Service Bus trigger reads).
- `apply` (consumer; core/sync/worker.py): one per record (lane) of an apply batch, child of its first message's
  context, linked to the other messages' contexts and to the invocation's own span (when the host made one).
  A change sent again (retry, waiting behind a held record) keeps the context it first had.
- `<METHOD> <path template>` (client; core/connectors/http.py): every HTTP attempt to Dataverse or F&O, child of
  whatever is current (an apply span, an initial-sync page, an admin call). The path's key predicates are
  replaced by `{key}`; queries are left out.
Attributes name maps, entity sets, sides, operations, message ids and counts: never record values or keys.

`configure(settings)` runs once per process (function_app.py, at import). What it sets up:
- TELEMETRY_ENABLED=false: nothing; every helper here returns at once (spans are a shared no-op context).
- PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true: the Functions Python worker has configured the Azure Monitor
  distro already (before it imported the app; with host.json `telemetryMode: OpenTelemetry`); it is used as is.
  The distro instruments httpx too, which doubles the HTTP spans; OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=httpx
  leaves them to ours.
- else APPLICATIONINSIGHTS_CONNECTION_STRING: `configure_azure_monitor()` (its httpx instrumentation off).
  Like any use of the distro it also sends the root logger's records; the Functions host forwards them already
  unless telemetryMode is OpenTelemetry: OTEL_LOGS_EXPORTER=none stops the second copy.
- else OTEL_EXPORTER_OTLP_ENDPOINT: OTLP/HTTP span and metric exporters (the standard OTEL_* variables apply).
- else OTEL_TRACES_EXPORTER=console: spans printed to stdout.
- else nothing: the OpenTelemetry API stays a no-op (a few microseconds a span, no ids made), but a context that
  arrives in a message is still passed on when the change is sent again.
A tracer provider set by someone else before (an SDK one) is used, not replaced. Tests hand in their own
span processor: `configure(settings, span_processor=SimpleSpanProcessor(InMemorySpanExporter()))`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from core.settings import Settings

log = logging.getLogger(__name__)

NAME = "dualwrite"  # the tracer's and the meter's name; the service name unless OTEL_SERVICE_NAME says otherwise
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"  # the Azure SDK convention (its value: the traceparent)
TRACE_PROPERTIES = (TRACEPARENT, TRACESTATE, DIAGNOSTIC_ID)
_BYTES_KEYS = {name: name.encode() for name in TRACE_PROPERTIES}

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer(NAME)  # a proxy: it follows the provider set later (ours, the worker's, a test's)
_lock = threading.Lock()
_enabled = False  # until configure() says so: code run without it (unit tests, tools) makes no spans
_setup: str | None = None
_NO_SPAN: contextlib.nullcontext[Span] = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable, re-entrant


# ---- setup ---------------------------------------------------------------------------------------------------

def configure(settings: Settings, *, span_processor: SpanProcessor | None = None) -> None:
    """Set up tracing and metrics export for this process (see the module's doc); later calls change nothing but
    the on/off switch and may add `span_processor` (tests). Never raises: telemetry must not stop the engine."""
    global _enabled, _setup
    with _lock:
        _enabled = bool(settings.telemetry_enabled)
        if not _enabled:
            if _setup is None:
                log.info("telemetry: off (TELEMETRY_ENABLED=false)")
            _setup = _setup or "off"
            return
        if _setup in (None, "off"):
            _setup = _install(plan(os.environ))
        if span_processor is not None:
            _add_processor(span_processor)


def plan(environ: Mapping[str, str]) -> str:
    """What `configure` sets up for these environment variables: `functions-worker`, `azure-monitor`, `otlp`,
    `console` or `none`."""
    if environ.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").strip().lower() == "true":
        return "functions-worker"
    if environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        return "azure-monitor"
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return "otlp"
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        return "console"
    return "none"


def setup() -> str | None:
    """What `configure` set up (`plan`'s answer, `existing`, `off`), None before it ran."""
    return _setup


def enabled() -> bool:
    return _enabled


def _install(chosen: str) -> str:
    from opentelemetry.sdk.trace import TracerProvider

    if chosen == "functions-worker":
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            log.info("telemetry: the Functions worker's Azure Monitor set-up (PYTHON_APPLICATIONINSIGHTS_ENABLE_"
                     "TELEMETRY)")
            return chosen
        log.warning("telemetry: PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY is true but nothing set up tracing "
                    "before the app was imported (not under the Functions Python worker?); the other settings decide")
        chosen = plan({k: v for k, v in os.environ.items() if k != "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"})
    if chosen != "none" and isinstance(trace.get_tracer_provider(), TracerProvider):
        log.info("telemetry: a tracer provider is set up already; using it (no %s exporter added)", chosen)
        return "existing"
    try:
        if chosen == "azure-monitor":
            from azure.monitor.opentelemetry import configure_azure_monitor

            # Our client spans cover Dataverse and F&O; the distro's httpx spans would double them.
            configure_azure_monitor(instrumentation_options={"httpx": {"enabled": False}})
        elif chosen == "otlp":
            _install_otlp()
        elif chosen == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

            _sdk_provider().add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    except Exception as error:  # a broken exporter set-up leaves the engine running, without export
        log.warning("telemetry: %s export could not be set up (%s: %s); spans and metrics go nowhere", chosen,
                    type(error).__name__, error)
        return "none"
    log.info("telemetry: %s", {"azure-monitor": "Azure Monitor (APPLICATIONINSIGHTS_CONNECTION_STRING)",
                               "otlp": "OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT)", "console": "spans to stdout",
                               "none": "on, no exporter configured: nothing is exported"}[chosen])
    return chosen


def _install_otlp() -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _sdk_provider().add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    metrics.set_meter_provider(MeterProvider(resource=_resource(),
                                             metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]))


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; what is passed here beats them.
    return Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: NAME})


def _sdk_provider() -> Any:
    """The process's SDK tracer provider: the one set already, or a new one made global."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    provider = TracerProvider(resource=_resource())
    trace.set_tracer_provider(provider)
    return provider


def _add_processor(processor: SpanProcessor) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider) and not isinstance(provider, trace.ProxyTracerProvider):
        log.warning("telemetry: the tracer provider is not the SDK's (%s); the span processor is not added",
                    type(provider).__name__)
        return
    _sdk_provider().add_span_processor(processor)


# ---- propagation through Service Bus messages -----------------------------------------------------------------

def inject(properties: dict[str, Any]) -> dict[str, Any]:
    """Write the current trace context into a message's application properties (`traceparent`, `tracestate` when
    there is one, `Diagnostic-Id`); nothing when telemetry is off or there is no valid context. Returns them."""
    if not _enabled:
        return properties
    if not trace.get_current_span().get_span_context().is_valid:
        return properties
    _propagator.inject(properties)
    if TRACEPARENT in properties:
        properties[DIAGNOSTIC_ID] = properties[TRACEPARENT]
    return properties


def extract(properties: Mapping[Any, Any]) -> otel_context.Context:
    """The trace context a message carries (`traceparent`, else `Diagnostic-Id` in W3C form; `tracestate`); keys
    and values may be bytes, as the SDK hands them. An empty context when there is none or it is malformed."""
    parent = _text(_get(properties, TRACEPARENT) or _get(properties, DIAGNOSTIC_ID))
    if not parent:
        return otel_context.Context()
    carrier = {TRACEPARENT: parent}
    state = _text(_get(properties, TRACESTATE))
    if state:
        carrier[TRACESTATE] = state
    return _propagator.extract(carrier)


def outgoing(properties: dict[str, Any]) -> dict[str | bytes, Any]:
    """A queued change's application properties, trace context included: the one it carries (a change sent again
    keeps its first trace), else the current one. The trace keys are bytes, as the Service Bus SDK names them: when
    its own tracing is on (the Azure Monitor distro's azure_sdk instrumentation) it keeps them instead of adding
    a second `traceparent` (the AMQP map would then hold a key twice)."""
    if _enabled and not any(name in properties for name in TRACE_PROPERTIES):
        inject(properties)
    out: dict[str | bytes, Any] = {}
    for key, value in properties.items():
        out[_BYTES_KEYS.get(key, key)] = value
    return out


def _get(properties: Mapping[Any, Any], name: str) -> Any:
    value = properties.get(name)
    return value if value is not None else properties.get(_BYTES_KEYS[name])


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else ""


# ---- spans -----------------------------------------------------------------------------------------------------

def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL) -> contextlib.AbstractContextManager[Span]:
    """A span under the current one (no-op when telemetry is off). Set attributes only `if span.is_recording()`."""
    if not _enabled:
        return _NO_SPAN
    return _started(name, kind)


def consumer_span(name: str, messages: Iterable[Mapping[Any, Any]]) -> contextlib.AbstractContextManager[Span]:
    """A span for work on some queued messages: child of the first one's trace context, linked to the others'
    (each context once) and to the current span (the invocation's, when the host made one). Without a context in
    the first message it is a child of the current span."""
    if not _enabled:
        return _NO_SPAN
    contexts = [extract(m) for m in messages]
    first = trace.get_current_span(contexts[0]).get_span_context() if contexts else trace.INVALID_SPAN_CONTEXT
    parent: otel_context.Context | None = None
    others = [trace.get_current_span(c).get_span_context() for c in contexts[1:]]
    seen: set[tuple[int, int]] = set()
    if first.is_valid:
        parent = contexts[0]
        seen.add((first.trace_id, first.span_id))
        others.append(trace.get_current_span().get_span_context())
    links = []
    for other in others:
        if other.is_valid and (other.trace_id, other.span_id) not in seen:
            seen.add((other.trace_id, other.span_id))
            links.append(Link(other))
    return _started(name, SpanKind.CONSUMER, parent, links)


@contextlib.contextmanager
def _started(name: str, kind: SpanKind, context: otel_context.Context | None = None,
             links: list[Link] | None = None) -> Iterator[Span]:
    """The current span for a block. An exception leaving it marks the span failed with its type alone: the SDK's
    own exception events would carry the message and traceback, which can quote values (a header, a record)."""
    with _tracer.start_as_current_span(name, context=context, kind=kind, links=links, record_exception=False,
                                       set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as error:
            if current.is_recording():
                current.set_attribute("error.type", type(error).__qualname__)
                current.set_status(Status(StatusCode.ERROR))
            raise


def failed(span: Span, description: str) -> None:
    """Mark a span failed with a short description (a category or a field name, never a value)."""
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, description))


def http_span(method: str, path: str, *, resend: int = 0, batched: bool = False,
              host: str | None = None, port: int | None = None) -> contextlib.AbstractContextManager[Span]:
    """A client span for one HTTP attempt (core.connectors.http): `<METHOD> <path template>`; see `path_template`."""
    if not _enabled:
        return _NO_SPAN
    return _http_span(method, path, resend, batched, host, port)


@contextlib.contextmanager
def _http_span(method: str, path: str, resend: int, batched: bool, host: str | None,
               port: int | None) -> Iterator[Span]:
    with _started(method, SpanKind.CLIENT) as current:
        if current.is_recording():
            template = path_template(path)
            current.update_name(f"{method} {template}")
            attributes: dict[str, Any] = {"http.request.method": method, "url.template": template}
            if host:
                attributes["server.address"] = host
            if port:
                attributes["server.port"] = port
            if resend:
                attributes["http.request.resend_count"] = resend
            if batched:
                attributes["dualwrite.batched"] = True  # sent as a part of a $batch (core.connectors.batching)
            current.set_attributes(attributes)
        yield current


def http_status(span: Span, status: int) -> None:
    """Record an HTTP answer's status on its client span (4xx and 5xx mark it failed)."""
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))


def path_template(path: str) -> str:
    """An OData path with what is inside its parentheses (keys, function parameters) replaced by `{key}`:
    `/data/CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')` -> `/data/CustomersV3({key})`. Quoted
    literals may hold parentheses and doubled quotes."""
    if "(" not in path:
        return path
    out: list[str] = []
    depth = 0
    quoted = False
    for char in path:
        if depth == 0:
            out.append(char)
            if char == "(":
                depth = 1
            continue
        if char == "'":
            quoted = not quoted  # a doubled quote flips twice: still inside the literal
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                out.append("{key})")
    if depth:  # unbalanced: keep the name, drop the rest
        out.append("{key}")
    return "".join(out)


# ---- metric instruments ----------------------------------------------------------------------------------------

# Upper bounds (seconds) for the lag and queue-wait histograms: fine in seconds, coarse past an hour.
LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True)
class Instruments:
    """The engine's metric instruments (the metrics module records into them):
    - `changes`: Counter `dualwrite.changes` {change}, attributes `map`, `direction`, `outcome`;
    - `lag`: Histogram `dualwrite.lag` s (source change -> written on the target), attributes `map`, `direction`;
    - `queue_wait`: Histogram `dualwrite.queue_wait` s (enqueued -> taken by apply), attributes `map`;
    - `throttled`: Counter `dualwrite.throttled` {response} (429s answered by a target), attribute `side`."""

    changes: metrics.Counter
    lag: metrics.Histogram
    queue_wait: metrics.Histogram
    throttled: metrics.Counter


@functools.cache
def instruments() -> Instruments:
    """The instruments, made once per process on the global meter provider (a no-op one until an exporter is set
    up: recording then costs a function call)."""
    return make_instruments(metrics.get_meter(NAME))


def make_instruments(meter: metrics.Meter) -> Instruments:
    """The instruments on `meter` (a test's own meter provider; the engine uses `instruments()`)."""
    return Instruments(
        changes=meter.create_counter("dualwrite.changes", unit="{change}",
                                     description="Changes handled by apply, by map, direction and outcome"),
        lag=meter.create_histogram("dualwrite.lag", unit="s", explicit_bucket_boundaries_advisory=LAG_BUCKETS_S,
                                   description="Time from a change at its source to its write on the target"),
        queue_wait=meter.create_histogram("dualwrite.queue_wait", unit="s",
                                          explicit_bucket_boundaries_advisory=LAG_BUCKETS_S,
                                          description="Time a change waited on the queue before apply took it"),
        throttled=meter.create_counter("dualwrite.throttled", unit="{response}",
                                       description="Throttled answers (429) from a target, by side"),
    )
