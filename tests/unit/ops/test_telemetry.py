"""core.ops.telemetry without a stack: the trace context through message properties and back, the consumer span's
parent and links, the path templates of client spans, and what `configure` would set up for which variables.

Spans go to a tracer provider of the test's own (the module's tracer swapped for the test), so nothing global is
set up here; the whole trace over the real parts is tests/integration/telemetry/test_trace.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, TraceFlags, TraceState

from core.ops import telemetry


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Telemetry on, its spans recorded in memory (restored after the test)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_enabled", True)
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_inject_extract_round_trip(spans: InMemorySpanExporter) -> None:
    parent = trace.NonRecordingSpan(trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("dw", "1")])))
    with trace.use_span(parent):
        properties = telemetry.inject({"map": "customers"})
    assert properties == {
        "map": "customers",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "dw=1",
        "Diagnostic-Id": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    extracted = trace.get_current_span(telemetry.extract(properties)).get_span_context()
    assert (extracted.trace_id, extracted.span_id, extracted.is_remote) == (parent.get_span_context().trace_id,
                                                                         parent.get_span_context().span_id, True)
    assert extracted.trace_state == TraceState([("dw", "1")])


def test_extract_reads_bytes_keys_and_the_diagnostic_id_alone() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for properties in ({b"traceparent": traceparent.encode()}, {"Diagnostic-Id": traceparent},
                       {b"Diagnostic-Id": traceparent}):
        context = trace.get_current_span(telemetry.extract(properties)).get_span_context()
        assert context.is_valid and f"{context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736", properties


@pytest.mark.parametrize("properties", [{}, {"traceparent": "garbage"}, {"Diagnostic-Id": "|abc.def."}])
def test_extract_without_a_valid_context_is_empty(properties: dict[str, str]) -> None:
    assert not trace.get_current_span(telemetry.extract(properties)).get_span_context().is_valid


def test_nothing_is_injected_when_telemetry_is_off_or_there_is_no_span(spans: InMemorySpanExporter,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert telemetry.inject({}) == {}  # on, but no current span
    with telemetry.span("ingest"):
        monkeypatch.setattr(telemetry, "_enabled", False)
        assert telemetry.inject({}) == {}
        assert telemetry.outgoing({"map": "m"}) == {"map": "m"}


def test_outgoing_keeps_the_context_a_change_carries_and_names_trace_keys_as_the_sdk_does(
        spans: InMemorySpanExporter) -> None:
    with telemetry.span("ingest") as ingest:
        fresh = telemetry.outgoing({"map": "customers"})
        made = ingest.get_span_context()
        first = f"00-{made.trace_id:032x}-{made.span_id:016x}-{int(made.trace_flags):02x}"
        assert fresh == {"map": "customers", b"traceparent": first, b"Diagnostic-Id": first}
    retried = {"map": "customers", "traceparent": first, "Diagnostic-Id": first, "attempts": "1"}
    with telemetry.span("apply"):  # another trace is current while the retry is sent
        assert telemetry.outgoing(dict(retried)) == {"map": "customers", b"traceparent": first,
                                                     b"Diagnostic-Id": first, "attempts": "1"}


def test_consumer_span_is_a_child_of_the_first_message_and_links_the_others(spans: InMemorySpanExporter) -> None:
    messages = []
    for name in ("ingest a", "ingest b", "ingest b"):  # the third carries the same context as the second
        if name == "ingest b" and len(messages) == 2:
            messages.append(dict(messages[1]))
            continue
        with telemetry.span(name, kind=SpanKind.PRODUCER):
            messages.append(telemetry.inject({}))
    with telemetry.span("invocation"), telemetry.consumer_span("apply", messages):
        pass
    by_name = {s.name: s for s in spans.get_finished_spans()}
    apply, first, second, invocation = (by_name[n] for n in ("apply", "ingest a", "ingest b", "invocation"))
    assert apply.kind == SpanKind.CONSUMER
    assert apply.parent is not None and apply.parent.span_id == first.context.span_id
    assert apply.context.trace_id == first.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in apply.links] == [
        (second.context.trace_id, second.context.span_id), (invocation.context.trace_id, invocation.context.span_id)]


def test_consumer_span_without_a_context_in_its_messages_is_a_child_of_the_current_span(
        spans: InMemorySpanExporter) -> None:
    with telemetry.span("invocation"), telemetry.consumer_span("apply", [{}, {"map": "m"}]):
        pass
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["apply"].parent is not None
    assert by_name["apply"].parent.span_id == by_name["invocation"].context.span_id
    assert by_name["apply"].links == ()


def test_an_exception_marks_the_span_failed_by_type_without_its_message(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), telemetry.span("apply"):
        raise ValueError("the value 'Contoso Ltd' is too long")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR and span.status.description is None
    assert span.attributes == {"error.type": "ValueError"}
    assert span.events == ()


def test_http_span_names_the_path_template_and_the_status(spans: InMemorySpanExporter) -> None:
    with telemetry.http_span("PATCH", "/data/CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')", resend=1,
                             host="127.0.0.1", port=7102) as span:
        telemetry.http_status(span, 412)
    (finished,) = spans.get_finished_spans()
    assert finished.name == "PATCH /data/CustomersV3({key})"
    assert finished.kind == SpanKind.CLIENT
    assert finished.attributes == {"http.request.method": "PATCH", "url.template": "/data/CustomersV3({key})",
                                   "server.address": "127.0.0.1", "server.port": 7102,
                                   "http.request.resend_count": 1, "http.response.status_code": 412,
                                   "error.type": "412"}
    assert finished.status.status_code == trace.StatusCode.ERROR


@pytest.mark.parametrize(("path", "template"), [
    ("/api/data/v9.2/accounts", "/api/data/v9.2/accounts"),
    ("/api/data/v9.2/accounts(8f3c2a4e-0000-4000-8000-000000000001)", "/api/data/v9.2/accounts({key})"),
    ("/api/data/v9.2/accounts(accountnumber='A(1)',x='it''s')/primarycontactid",
     "/api/data/v9.2/accounts({key})/primarycontactid"),
    ("/data/CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')", "/data/CustomersV3({key})"),
    ("/api/data/v9.2/$batch", "/api/data/v9.2/$batch"),
    ("/api/data/v9.2/accounts(accountnumber='unterminated", "/api/data/v9.2/accounts({key}"),
])
def test_path_template_leaves_key_values_out(path: str, template: str) -> None:
    assert telemetry.path_template(path) == template


def test_spans_are_a_shared_no_op_when_telemetry_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_enabled", False)
    assert telemetry.span("a") is telemetry.consumer_span("b", [{}]) is telemetry.http_span("GET", "/x")
    with telemetry.span("a") as span:
        assert not span.is_recording()


@pytest.mark.parametrize(("environ", "chosen"), [
    ({}, "none"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "console"}, "otlp"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h"},
     "azure-monitor"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
      "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "True"}, "functions-worker"),
    ({"APPLICATIONINSIGHTS_CONNECTION_STRING": " ", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}, "none"),
])
def test_plan_follows_the_documented_order(environ: dict[str, str], chosen: str) -> None:
    assert telemetry.plan(environ) == chosen


def test_the_workers_set_up_is_used_only_when_it_happened(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "true")
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider())  # the worker's, set before import
    assert telemetry._install("functions-worker") == "functions-worker"
    # Not under the worker (nothing set up before): the other settings decide, none here, so nothing is installed.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    assert telemetry._install("functions-worker") == "none"


def test_instruments_have_names_and_units() -> None:
    assert telemetry.instruments() is telemetry.instruments()  # made once; no meter provider here: a no-op
    telemetry.instruments().changes.add(1, {"map": "customers", "direction": "to_dataverse", "outcome": "applied"})
    reader = InMemoryMetricReader()
    made = telemetry.make_instruments(MeterProvider(metric_readers=[reader]).get_meter("test"))
    made.changes.add(2, {"map": "customers", "direction": "to_dataverse", "outcome": "applied"})
    made.lag.record(1.5, {"map": "customers", "direction": "to_dataverse"})
    made.queue_wait.record(0.2, {"map": "customers"})
    made.throttled.add(1, {"side": "dataverse"})
    data = reader.get_metrics_data()
    assert data is not None
    found = {m.name: m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert {(name, m.unit) for name, m in found.items()} == {
        ("dualwrite.changes", "{change}"), ("dualwrite.lag", "s"), ("dualwrite.queue_wait", "s"),
        ("dualwrite.throttled", "{response}")}
    (lag,) = found["dualwrite.lag"].data.data_points
    assert tuple(lag.explicit_bounds) == telemetry.LAG_BUCKETS_S and lag.sum == 1.5
