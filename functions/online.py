"""A synchronous Dataverse webhook step (online maps): write to F&O inside the user's save.

Reached through the Dataverse webhook route when the step's context says `Mode` 0 (core.sync.online).
200 once the change is written to F&O (or queued for the maps that are not online or not running);
422 problem+json carrying F&O's refusal, 503 when F&O or the queue cannot take it now: either fails
the user's save, and Dataverse rolls it back (it tries once more on 503 only).
"""

from __future__ import annotations

import logging

import azure.functions as func
from azure.servicebus.exceptions import ServiceBusError

from core.events.model import ChangeEvent
from core.sync.online import OnlineRefused, sync_online
from functions.http import json_response, problem, runtime_or_problem
from functions.runtime import redeploying

log = logging.getLogger("functions.online")


async def online_step(event: ChangeEvent) -> func.HttpResponse:
    rt = await runtime_or_problem()
    if isinstance(rt, func.HttpResponse):
        return rt
    maps = rt.maps
    try:
        result = await sync_online(event, maps, applier=rt.worker.applier, modes=rt.modes, queue=rt.queue,
                                   activity=rt.activity, links=rt.links, buckets=rt.settings.apply_session_buckets,
                                   images_current=not redeploying())
    except OnlineRefused as refusal:
        log.info("online %s of %s %s refused: %s", event.operation, event.entity, event.record_id, refusal.message)
        if refusal.kind == "unavailable":
            return problem(503, "F&O unavailable", refusal.message, map=refusal.map)
        return problem(422, "F&O refused the change", refusal.message, map=refusal.map)
    except (ServiceBusError, OSError) as error:
        log.error("online step: the changes queue is unreachable: %s", error)
        return problem(503, "Queue unavailable", "the changes queue cannot be reached; the save can be tried again")
    return json_response({"online": result.applied, "queued": result.queued})
