"""Ingest entry points: Dataverse webhooks, F&O events over HTTPS and from the fno-events queue.

Thin: parse -> `core.sync.ingest.ingest` -> answer. 202 once every change is on the changes
queue; 400/413 problem+json naming the bad field with nothing queued; 503 when the queue cannot
be reached (Dataverse retries 502/503/504 once, F&O retries its deliveries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func
from azure.servicebus.exceptions import ServiceBusError
from opentelemetry.trace import Span, SpanKind

from core.events.dataverse import read_webhook
from core.events.errors import PayloadError
from core.events.fno import parse_fno
from core.events.model import ChangeEvent, Skipped
from core.maps import MapSet
from core.ops import telemetry
from core.ops.errors import record_refused_fno_event
from core.store.activity import ActivityEntry
from core.sync.ingest import IngestResult, ingest
from core.virtual.events import note_fno_events
from functions.http import json_response, problem, runtime_or_problem
from functions.online import online_step
from functions.runtime import Runtime, get_runtime

bp = func.Blueprint()
log = logging.getLogger("functions.ingest")

UNMAPPED = "unmapped"  # the activity log's map name for entities no map covers
MAX_BODY = 1024 * 1024  # 1 MiB; Dataverse trims its bodies at 256 KB, F&O batches stay well below


@bp.route(route="dataverse/webhook", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def dataverse_webhook(req: func.HttpRequest) -> func.HttpResponse:
    headers = dict(req.headers)
    body = req.get_body() or b""
    refused: PayloadError | None = None
    if len(body) <= MAX_BODY:
        try:
            event, synchronous = await _off_loop(read_webhook, body, headers)
        except PayloadError as error:  # a bad payload is answered by _answer, as for any other (parsed once)
            refused = error
        else:
            if synchronous:
                return await online_step(event)
            return await _answer(req, "dataverse", lambda _body, _maps: ([event], [], False))

    def answer_refused(body: bytes, _maps: MapSet) -> tuple[list[ChangeEvent], list[Skipped], bool]:
        raise refused if refused is not None else PayloadError("body", "too large")  # 413 before this

    return await _answer(req, "dataverse", answer_refused)


@bp.route(route="fno/events", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def fno_events(req: func.HttpRequest) -> func.HttpResponse:
    seen: list[ChangeEvent] = []

    def parse(body: bytes, maps: MapSet) -> tuple[list[ChangeEvent], list[Skipped], bool]:
        parsed = parse_fno(body, maps)
        seen.extend(parsed.events)
        return parsed.events, parsed.skipped, parsed.test_message

    answer = await _answer(req, "fno", parse)
    if answer.status_code == 202 and seen:  # virtual tables told about F&O events (core.virtual.events)
        try:
            rt = await get_runtime()
            await note_fno_events(rt.settings, rt.tables, req.get_body() or b"", seen)
        except Exception as error:  # the changes are queued: the answer stays 202
            log.error("F&O events not noted for virtual table notifications: %s", error)
    return answer


@bp.service_bus_queue_trigger(arg_name="msg", queue_name="%FNO_EVENTS_QUEUE%", connection="SERVICEBUS_CONNECTION")
async def fno_events_queue(msg: func.ServiceBusMessage) -> None:
    """F&O events delivered straight to Service Bus. A payload that cannot be parsed goes to the error log
    at once (redelivering bad data cannot help) and the message completes; anything else raises, so the
    broker redelivers it and then dead-letters it, where the error log shows it too."""
    rt = await get_runtime()
    body = msg.get_body()
    try:
        with telemetry.span("ingest", kind=SpanKind.PRODUCER) as span:
            try:
                parsed = parse_fno(body, rt.maps)
                result = await ingest(parsed.events, rt.maps, rt.queue, buckets=rt.settings.apply_session_buckets,
                                      links=rt.links)
            except PayloadError as error:
                telemetry.failed(span, f"invalid payload: {error.field}")
                raise
            _traced(span, "fno", len(parsed.events), result)
    except PayloadError as error:
        # A sender may leave the message id out; the sequence number is as stable across redeliveries.
        message_id = msg.message_id or f"seq-{msg.sequence_number}"
        entry = await record_refused_fno_event(rt.errors, message_id=message_id, body=body, error=error,
                                               attempts=msg.delivery_count or 1)
        log.warning("fno-events message %s is not a valid F&O event (%s); recorded in the error log as %s",
                    msg.message_id, error, entry.id)
        return
    await _record_skipped(rt, "fno", result.skipped)
    await note_fno_events(rt.settings, rt.tables, body, parsed.events)  # raises: the broker redelivers (ingest dedups)
    log.info("fno-events message %s: %d change(s) queued, %d skipped%s", msg.message_id, result.accepted,
             len(result.skipped), " (activation test message)" if parsed.test_message else "")


Parser = Callable[[bytes, MapSet], tuple[list[ChangeEvent], list[Skipped], bool]]
OFF_LOOP_BYTES = 64 * 1024  # a body larger than this is parsed in a worker thread
T = TypeVar("T")


async def _off_loop(parse: Callable[[bytes, Any], T], body: bytes, other: Any) -> T:
    """`parse(body, other)`: on the loop for a small body (no thread hop for a usual webhook), in a worker
    thread for a larger one, so a body that is slow to parse (up to 1 MiB of tiny values: a few hundred ms)
    never stalls health, ingest and apply on the event loop."""
    if len(body) <= OFF_LOOP_BYTES:
        return parse(body, other)
    return await asyncio.to_thread(parse, body, other)


async def _answer(req: func.HttpRequest, source: str, parse: Parser) -> func.HttpResponse:
    body = req.get_body() or b""
    if len(body) > MAX_BODY:
        return problem(413, "Payload too large", f"the body has {len(body)} bytes; at most {MAX_BODY} are accepted",
                       field="body")
    rt = await runtime_or_problem()
    if isinstance(rt, func.HttpResponse):
        return rt
    maps = rt.maps
    with telemetry.span("ingest", kind=SpanKind.PRODUCER) as span:  # parse and enqueue: the trace's root
        try:
            events, skipped, test_message = await _off_loop(parse, body, maps)
            result = await ingest(events, maps, rt.queue, buckets=rt.settings.apply_session_buckets, links=rt.links)
        except PayloadError as error:
            telemetry.failed(span, f"invalid payload: {error.field}")
            log.warning("%s payload rejected: %s", source, error)
            return problem(400, "Invalid payload", error.message, field=error.field)
        except (ServiceBusError, OSError) as error:
            telemetry.failed(span, "queue unavailable")
            log.error("%s payload not queued, the changes queue is unreachable: %s", source, error)
            return problem(503, "Queue unavailable", "the changes queue cannot be reached; nothing was queued, "
                           "send the payload again later")
        result = IngestResult(result.accepted, skipped + result.skipped)
        _traced(span, source, len(events), result)
    await _record_skipped(rt, source, result.skipped)
    answer: dict[str, object] = {"accepted": result.accepted, "skipped": [s.model_dump() for s in result.skipped]}
    if test_message:
        answer["test_message"] = True
    return json_response(answer, status=202)


def _traced(span: Span, source: str, events: int, result: IngestResult) -> None:
    """The ingest span's attributes: counts only (no keys, no values)."""
    if span.is_recording():
        span.set_attributes({"dualwrite.source": source, "dualwrite.events": events,
                             "dualwrite.accepted": result.accepted, "dualwrite.skipped": len(result.skipped)})


async def _record_skipped(rt: Runtime, source: str, skipped: list[Skipped]) -> None:
    """Skipped entities go to the activity log under map "unmapped" (only logged when it cannot be
    written: the changes are already queued, so the answer stays 202)."""
    if not skipped:
        return
    entries = [ActivityEntry(map=UNMAPPED, key=item.entity, source=source, operation="", outcome="skipped",
                             reason=item.reason, event_id=item.event_id) for item in skipped]
    try:
        await rt.activity.record(entries)
    except Exception as error:  # the answer must not depend on the activity log being up
        for item in skipped:
            log.warning("%s event %s skipped: %s (%s)", source, item.event_id, item.entity, item.reason)
        log.warning("could not record %d skipped entr(ies) in the activity log: %s", len(entries), error)
