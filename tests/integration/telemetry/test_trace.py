"""One trace from an F&O event to the Dataverse write, over the real parts, with the spans seen in this process.

A customer created in an F&O simulator of this module's own is delivered by it, as a real data event, to a local
HTTPS endpoint; that payload goes into the ingest function (functions/ingest.py, in this process), which puts the
change on a changes queue of the Service Bus emulator (the real SDK). The test takes the session's messages with
the SDK, hands them to the apply function as the host would (devstack.host.servicebus), and the worker writes the
account to the Dataverse simulator over HTTP. An in-memory span exporter, given to core.ops.telemetry.configure,
must then hold one trace: ingest -> apply -> the client spans of the F&O read and the Dataverse write. The apply
function's retry path (a change sent again) keeps that trace too.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION
from azure.servicebus.aio import ServiceBusClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import functions.runtime
from core.ops import telemetry
from core.settings import load_settings
from devstack.host.servicebus import to_function_message
from devstack.processes import free_port
from functions.apply import apply_changes
from functions.ingest import fno_events
from functions.runtime import Runtime
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.integration.fno.receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Telemetry on in this process, every span kept in memory; off again after the module."""
    exporter = InMemorySpanExporter()
    telemetry.configure(load_settings({**_LOCAL, "TELEMETRY_ENABLED": "true"}),
                        span_processor=SimpleSpanProcessor(exporter))
    yield exporter
    telemetry.configure(load_settings({**_LOCAL, "TELEMETRY_ENABLED": "false"}))
    exporter.shutdown()


_LOCAL = {"TABLE_STORAGE_CONNECTION": "UseDevelopmentStorage=true", "SERVICEBUS_CONNECTION": "Endpoint=sb://x/;"
          "SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true;", "DATAVERSE_URL": "http://127.0.0.1:1",
          "FNO_URL": "http://127.0.0.1:2", "AUTH_MODE": "local"}


@pytest.fixture(scope="module")
def fno_sim() -> Iterator[FnoSimulator]:
    """An F&O simulator of this module's own: its event endpoint and activation stay out of other tests."""
    sim = start_fno("fno-telemetry")
    try:
        yield sim
    finally:
        sim.process.stop()


@pytest.fixture(scope="module")
def events(fno_sim: FnoSimulator) -> Iterator[Receiver]:
    """The HTTPS endpoint F&O delivers CustomersV3.Create data events of usmf to."""
    receiver = Receiver(fno_sim.tls).start()
    try:
        with httpx.Client(base_url=fno_sim.admin_url, timeout=30) as admin:
            admin.post("endpoints", json={"name": "traced", "type": "https", "url": receiver.url,
                                          "headerName": "x-functions-key", "headerValue": "k"}).raise_for_status()
            admin.post("activations", json={"eventId": "CustomersV3.Create", "legalEntity": "usmf",
                                            "endpoint": "traced"}).raise_for_status()
            admin.post("drain").raise_for_status()  # the activation's test message
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
async def runtimes(azurite: str, servicebus_emulator: ServiceBusEmulator, servicebus_queue: Any,
                   fno_sim: FnoSimulator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[[str], Runtime]]:
    """`runtimes(dataverse_url)`: a runtime over the local stack, with a changes queue of this test's own, made the
    process-wide one the functions use (until the next call)."""
    queue = servicebus_queue("changes")
    made: list[Runtime] = []

    def use(dataverse_url: str) -> Runtime:
        rt = Runtime(load_settings({
            "TABLE_STORAGE_CONNECTION": azurite, "SERVICEBUS_CONNECTION": servicebus_emulator.connection_string,
            "CHANGES_QUEUE": queue, "DATAVERSE_URL": dataverse_url, "FNO_URL": fno_sim.url, "AUTH_MODE": "local",
            "DEPLOY_ON_START": "false", "TELEMETRY_ENABLED": "true",
        }))
        monkeypatch.setattr(functions.runtime, "_runtime", rt)
        made.append(rt)
        return rt

    yield use
    for rt in made:
        for name, close in (("queue", "close"), ("dataverse", "aclose"), ("fno", "aclose"), ("meter", "close"),
                            ("tables", "close")):
            held = rt.__dict__.get(name)
            if held is not None:
                await getattr(held, close)()


def _new_customer(fno_sim: FnoSimulator, receiver: Receiver) -> tuple[str, bytes]:
    """A customer created in F&O, and the body of the data event F&O delivered for it."""
    account = f"TRC-{uuid.uuid4().hex[:8].upper()}"
    created = httpx.post(f"{fno_sim.data_url}CustomersV3", headers=fno_sim.headers(), timeout=30, json={
        "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": f"Traced {account}",
        "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD"})
    assert created.status_code == 201, created.text
    return account, _created_event(receiver, account)


async def _ingest(body: bytes) -> None:
    """The payload into the ingest function, as the host hands it over."""
    request = func.HttpRequest("POST", "http://localhost/api/fno/events", body=body,
                               headers={"Content-Type": "application/json"})
    answer = await fno_events.build().get_user_function()(request)
    assert answer.status_code == 202, answer.get_body()
    assert json.loads(answer.get_body())["accepted"] == 1


def _account_names(dataverse: DataverseSim, account: str) -> list[str]:
    with httpx.Client(base_url=dataverse.base_url, headers=dataverse.headers(), timeout=30) as client:
        rows = client.get("accounts", params={"$filter": f"accountnumber eq '{account}'"}).json()["value"]
    return [row["name"] for row in rows]


def _created_event(receiver: Receiver, account: str, timeout: float = 30.0) -> bytes:
    """The body of the data event F&O delivered for the customer's creation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for received in list(receiver.received):
            if f'"{account}"' in received.body.decode("utf-8", "replace"):
                payload = received.json()
                for item in payload if isinstance(payload, list) else [payload]:
                    if item.get("MessageName") == "Create" and account in json.dumps(item):
                        return received.body
        time.sleep(0.1)
    raise AssertionError(f"F&O delivered no Create data event for {account} within {timeout:.0f} s")


async def _apply_all(rt: Runtime, expected: int, wait: float = 10.0) -> int:
    """Take the changes queue's messages session by session with the SDK and give each batch to the apply function,
    as the host does; complete them after. How many were applied."""
    taken = 0
    deadline = time.monotonic() + wait
    async with ServiceBusClient.from_connection_string(rt.settings.servicebus_connection.get_secret_value(),
                                                       retry_total=0) as client:
        while taken < expected and time.monotonic() < deadline:
            async with client.get_queue_receiver(rt.settings.changes_queue, session_id=NEXT_AVAILABLE_SESSION,
                                                 max_wait_time=2) as receiver:
                messages = await receiver.receive_messages(max_message_count=50, max_wait_time=2)
                if messages:
                    await apply_changes.build().get_user_function()([to_function_message(m) for m in messages])
                    for message in messages:
                        await receiver.complete_message(message)
                    taken += len(messages)
    return taken


def _by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_trace_from_the_fno_event_through_the_queue_to_the_dataverse_write(
        spans: InMemorySpanExporter, events: Receiver, fno_sim: FnoSimulator, dataverse: DataverseSim,
        runtimes: Callable[[str], Runtime]) -> None:
    runtime = runtimes(dataverse.url)
    account, body = _new_customer(fno_sim, events)
    spans.clear()

    await _ingest(body)
    assert await _apply_all(runtime, expected=1) == 1
    assert _account_names(dataverse, account) == [f"Traced {account}"]

    finished = spans.get_finished_spans()
    (ingest,) = [s for s in finished if s.name == "ingest"]
    (apply,) = [s for s in finished if s.name == "apply"]
    trace_id = ingest.context.trace_id
    traced = [s for s in finished if s.context.trace_id == trace_id]
    by_id = _by_id(list(traced))

    # ingest is the root; apply's parent is ingest (through the message's application properties)
    assert ingest.parent is None and ingest.kind == SpanKind.PRODUCER
    assert apply.context.trace_id == trace_id and apply.parent is not None and apply.parent.is_remote
    assert apply.parent.span_id == ingest.context.span_id and apply.kind == SpanKind.CONSUMER
    assert ingest.attributes is not None and apply.attributes is not None
    assert dict(ingest.attributes) == {"dualwrite.source": "fno", "dualwrite.events": 1, "dualwrite.accepted": 1,
                                       "dualwrite.skipped": 0}
    assert apply.attributes["dualwrite.map"] == "customers" and apply.attributes["dualwrite.applied"] == 1

    # the HTTP calls apply made are its descendants, in the same trace: the F&O read and the Dataverse write
    clients = [s for s in traced if s.kind == SpanKind.CLIENT]
    assert clients and all("apply" in _ancestors(s, by_id) for s in clients), [s.name for s in clients]
    templates = {(s.attributes or {}).get("url.template", "") for s in clients}
    assert any(t.startswith("/data/CustomersV3") for t in templates), templates
    writes = [s for s in clients if (s.attributes or {}).get("http.request.method") in ("POST", "PATCH")
              and "/api/data/v9.2/accounts" in str((s.attributes or {}).get("url.template"))]
    assert writes and all((s.attributes or {}).get("http.response.status_code") in (200, 201, 204) for s in writes)

    # no record values in any span: the account number and name appear nowhere
    for s in traced:
        text = s.name + json.dumps(dict(s.attributes or {}), default=str)
        assert account not in text and "Traced" not in text, s.name


async def test_a_change_sent_again_keeps_its_trace(spans: InMemorySpanExporter, events: Receiver,
                                                  fno_sim: FnoSimulator, dataverse: DataverseSim,
                                                  runtimes: Callable[[str], Runtime]) -> None:
    """Dataverse is down for the first apply: the worker sends the change again (a scheduled message, its
    properties copied); applied by the next invocation once Dataverse answers, it is still in the ingest's trace."""
    down = runtimes(f"http://127.0.0.1:{free_port()}")
    account, body = _new_customer(fno_sim, events)
    spans.clear()

    await _ingest(body)
    assert await _apply_all(down, expected=1) == 1  # Dataverse refuses the connection: retrying
    assert _account_names(dataverse, account) == []
    up = runtimes(dataverse.url)
    assert await _apply_all(up, expected=1, wait=20) == 1  # the change sent again, due after its backoff
    assert _account_names(dataverse, account) == [f"Traced {account}"]

    finished = spans.get_finished_spans()
    (ingest,) = [s for s in finished if s.name == "ingest"]
    applies = [s for s in finished if s.name == "apply"]
    assert [(s.attributes or {}).get("dualwrite.retrying") for s in applies] == [1, None]
    assert [(s.attributes or {}).get("dualwrite.applied") for s in applies] == [None, 1]
    for apply in applies:
        assert apply.context.trace_id == ingest.context.trace_id
        assert apply.parent is not None and apply.parent.span_id == ingest.context.span_id
