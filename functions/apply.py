"""The apply function: one queued change at a time per record (session = map + record).

Thin: hand the delivery to the engine's worker. `RetryLater` (a transient failure before the last
attempt) propagates, so the host abandons the message and the broker redelivers it.
"""

import azure.functions as func

from core.sync.worker import Delivery
from functions.runtime import get_runtime

bp = func.Blueprint()


@bp.service_bus_queue_trigger(arg_name="message", queue_name="%CHANGES_QUEUE%", connection="SERVICEBUS_CONNECTION",
                              is_sessions_enabled=True)
async def apply_change(message: func.ServiceBusMessage) -> None:
    runtime = await get_runtime()
    await runtime.worker.handle(Delivery(
        body=message.get_body(), message_id=message.message_id or "", session_id=message.session_id or "",
        delivery_count=message.delivery_count or 1))
