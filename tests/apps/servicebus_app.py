"""Service Bus-triggered functions for the host's pump tests. Each reports what it received to
the queue in app setting REPORT_QUEUE, through a Service Bus output binding, so the tests observe
the host only through the broker."""

import asyncio
import json
import logging
import time
from typing import List  # noqa: UP035 - the Python worker refuses list[...] on a binding

import azure.functions as func

app = func.FunctionApp()
ATTEMPTS: dict[str, int] = {}


def _describe(function: str, msg: func.ServiceBusMessage) -> dict:
    return {
        "function": function,
        "body": msg.get_body().decode(),
        "message_id": msg.message_id,
        "delivery_count": msg.delivery_count,
        "session_id": msg.session_id,
        "application_properties": msg.application_properties,
        "enqueued": msg.enqueued_time_utc.isoformat() if msg.enqueued_time_utc else None,
        "sequence_number": msg.sequence_number,
        "content_type": msg.content_type,
    }


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%SINGLE_QUEUE%", connection="SERVICEBUS_CONNECTION")
@app.service_bus_queue_output(arg_name="report", queue_name="%REPORT_QUEUE%", connection="SERVICEBUS_CONNECTION")
def single(msg: func.ServiceBusMessage, report: func.Out[str]) -> None:
    body = msg.get_body().decode()
    ATTEMPTS[msg.message_id] = ATTEMPTS.get(msg.message_id, 0) + 1
    if body.startswith("fail-times:") and ATTEMPTS[msg.message_id] <= int(body.split(":")[1]):
        raise RuntimeError(f"deliberate failure on attempt {ATTEMPTS[msg.message_id]}")
    if body.startswith("slow:"):
        logging.info("slow invocation started: %s", msg.message_id)
        time.sleep(float(body.split(":")[1]))
    report.set(json.dumps({**_describe("single", msg), "attempts": ATTEMPTS[msg.message_id]}))


@app.service_bus_queue_trigger(
    arg_name="batch", queue_name="%BATCH_QUEUE%", connection="SERVICEBUS_CONNECTION", cardinality="many"
)
@app.service_bus_queue_output(arg_name="report", queue_name="%REPORT_QUEUE%", connection="SERVICEBUS_CONNECTION")
async def many(batch: List[func.ServiceBusMessage], report: func.Out[str]) -> None:  # noqa: UP006 (the worker)
    report.set(json.dumps({"function": "many", "bodies": [m.get_body().decode() for m in batch]}))


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name="%SESSION_QUEUE%", connection="SERVICEBUS_CONNECTION", is_sessions_enabled=True
)
@app.service_bus_queue_output(arg_name="report", queue_name="%REPORT_QUEUE%", connection="SERVICEBUS_CONNECTION")
async def per_record(msg: func.ServiceBusMessage, report: func.Out[str]) -> None:
    report.set(json.dumps(_describe("per_record", msg)))


@app.service_bus_queue_trigger(
    arg_name="batch", queue_name="%BUCKET_QUEUE%", connection="SERVICEBUS_CONNECTION", is_sessions_enabled=True,
    cardinality="many",
)
@app.service_bus_queue_output(arg_name="report", queue_name="%REPORT_QUEUE%", connection="SERVICEBUS_CONNECTION")
async def per_bucket(batch: List[func.ServiceBusMessage], report: func.Out[str]) -> None:  # noqa: UP006
    started = time.time()
    await asyncio.sleep(0.3)  # long enough for a second session's invocation to overlap, were there one
    report.set(json.dumps({"function": "per_bucket", "sessions": sorted({m.session_id for m in batch}),
                           "bodies": [m.get_body().decode() for m in batch], "started": started,
                           "ended": time.time()}))
