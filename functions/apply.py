"""The apply function: batches of queued changes, all of one session (a bucket of records).

Thin: hand the batch to the engine's worker, which applies each record's changes in order and
turns every failure into a scheduled retry or an error-log entry, so the batch always completes.
Only when the worker cannot record or re-send at all does it raise: the host abandons the batch
and the broker delivers it again.
"""

from datetime import UTC, datetime
from typing import List  # noqa: UP035 - see apply_changes

import azure.functions as func

from core.sync.worker import Delivery
from functions.runtime import get_runtime

bp = func.Blueprint()


def delivery(message: func.ServiceBusMessage) -> Delivery:
    properties = {str(k): str(v) for k, v in (message.application_properties or {}).items()}
    return Delivery(body=message.get_body(), message_id=message.message_id or "",
                    session_id=message.session_id or "", delivery_count=message.delivery_count or 1,
                    properties=properties, enqueued_at=_utc(message.enqueued_time_utc))


def _utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@bp.service_bus_queue_trigger(arg_name="messages", queue_name="%CHANGES_QUEUE%", connection="SERVICEBUS_CONNECTION",
                              is_sessions_enabled=True, cardinality=func.Cardinality.MANY)
async def apply_changes(messages: List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    # typing.List, not list[...]: Microsoft's Python worker refuses a PEP 585 `list[...]` annotation ("invalid
    # non-type annotation", azure-functions-runtime 1.3) and would not load this function in Azure
    # (tests/infra/test_worker_indexing.py).
    runtime = await get_runtime()
    await runtime.worker.handle_batch([delivery(m) for m in messages])
