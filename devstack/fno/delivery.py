"""Event delivery after commit: endpoint registry, activations, retries, the errors list.

Each endpoint has its own queue and worker so one slow endpoint does not hold up the others, and
events to one endpoint leave in commit order. A failed send is retried `retries` times
`retry_delay` seconds apart (F&O default: 3 x 1 s), then lands in the errors list, from which an
admin call resends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from devstack.fno import events, wire
from devstack.fno.schema import Schema
from devstack.fno.service import Change
from devstack.fno.storage import Storage

log = logging.getLogger("devstack.fno.delivery")
EndpointKind = Literal["https", "servicebus"]
MAX_ENDPOINTS_PER_EVENT = 10


class EndpointError(ValueError):
    """A registry request that cannot be honoured (bad endpoint or activation); the text says why."""


class DeliveryFailed(Exception):
    """One attempt to send a payload failed (transient from the sender's point of view)."""


@dataclass
class Outbound:
    endpoint: str
    event_id: str
    body: str  # JSON text, as sent
    properties: dict[str, str]  # Service Bus application properties / extra context
    message_id: str


def validate_endpoint(config: dict[str, Any]) -> dict[str, Any]:
    kind = config.get("type")
    if kind == "https":
        url = config.get("url")
        if not isinstance(url, str) or not url:
            raise EndpointError("An HTTPS endpoint needs 'url'.")
        parts = urlsplit(url)
        # F&O only calls https; plain http is accepted for loopback receivers of the local stack.
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")):
            raise EndpointError(f"The endpoint URL '{url}' must use https (http only for localhost).")
        header_value = config.get("headerValue")
        return {"type": "https", "url": url, "headerName": config.get("headerName") or "x-functions-key",
                "headerValue": header_value if isinstance(header_value, str) else None}
    if kind == "servicebus":
        conn = config.get("connectionString")
        queue = config.get("queue")
        if not isinstance(conn, str) or "Endpoint=" not in conn:
            raise EndpointError("A Service Bus endpoint needs 'connectionString' (Endpoint=sb://...).")
        if not isinstance(queue, str) or not queue:
            raise EndpointError("A Service Bus endpoint needs 'queue'.")
        return {"type": "servicebus", "connectionString": conn, "queue": queue}
    raise EndpointError("Endpoint 'type' must be 'https' or 'servicebus'.")


class Sender:
    """Sends one payload to one endpoint; raises DeliveryFailed on any failure."""

    def __init__(self, ca_file: str | None = None) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file:  # trust a local CA too (the local stack's self-signed receivers), besides the system's
            verify = ssl.create_default_context()
            verify.load_verify_locations(cafile=ca_file)
        self._http = httpx.AsyncClient(timeout=30.0, verify=verify)
        self._sb: dict[str, Any] = {}

    async def send(self, config: dict[str, Any], out: Outbound) -> None:
        try:
            if config["type"] == "https":
                await self._send_https(config, out)
            else:
                await self._send_servicebus(config, out)
        except DeliveryFailed:
            raise
        except Exception as exc:  # any transport error is a failed attempt
            await self._drop_servicebus(config)
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _send_https(self, config: dict[str, Any], out: Outbound) -> None:
        headers = {"Content-Type": "application/json"}
        if config.get("headerValue"):
            headers[config["headerName"]] = config["headerValue"]
        resp = await self._http.post(config["url"], content=out.body.encode(), headers=headers)
        if resp.status_code >= 300:
            raise DeliveryFailed(f"HTTP {resp.status_code} from {config['url']}: {resp.text[:500]}")

    async def _send_servicebus(self, config: dict[str, Any], out: Outbound) -> None:
        from azure.servicebus import ServiceBusMessage
        from azure.servicebus.aio import ServiceBusClient

        key = f"{config['connectionString']}|{config['queue']}"
        if key not in self._sb:
            # Our own retry policy (F&O's 3 x 1 s) governs; the SDK must not add minutes of its own.
            client = ServiceBusClient.from_connection_string(config["connectionString"], retry_total=0)
            self._sb[key] = (client, client.get_queue_sender(config["queue"]))
        _, sender = self._sb[key]
        message = ServiceBusMessage(
            out.body, content_type="application/json", message_id=out.message_id,
            application_properties=dict(out.properties),
        )
        await sender.send_messages(message)

    async def _drop_servicebus(self, config: dict[str, Any]) -> None:
        if config.get("type") != "servicebus":
            return
        entry = self._sb.pop(f"{config['connectionString']}|{config['queue']}", None)
        if entry:
            client, sender = entry
            with contextlib.suppress(Exception):
                await sender.close()
            with contextlib.suppress(Exception):
                await client.close()

    async def close(self) -> None:
        await self._http.aclose()
        for client, sender in self._sb.values():
            with contextlib.suppress(Exception):
                await sender.close()
            with contextlib.suppress(Exception):
                await client.close()
        self._sb.clear()


class Dispatcher:
    def __init__(self, schema: Schema, storage: Storage, *, retries: int = 3, retry_delay: float = 1.0,
                 ca_file: str | None = None) -> None:
        self.schema = schema
        self.storage = storage
        self.retries = retries
        self.retry_delay = retry_delay
        self.sender = Sender(ca_file)
        self._queues: dict[str, asyncio.Queue[Outbound]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._index: dict[str, list[tuple[str, str]]] | None = None  # event id -> [(legal entity, endpoint)]
        self.delivered = 0
        self._published = 0

    # ---- registry ----------------------------------------------------------------------------------
    def put_endpoint(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        if not name:
            raise EndpointError("An endpoint needs a 'name'.")
        clean = validate_endpoint(config)
        self.storage.put_endpoint(name, clean)
        return clean

    def delete_endpoint(self, name: str) -> bool:
        self._index = None
        return self.storage.delete_endpoint(name)

    async def activate(self, event_id: str, legal_entity: str, endpoint: str, initiating: Any) -> dict[str, Any]:
        """Activate an event for a legal entity ('' = all) on an endpoint; F&O first sends a test message."""
        if not events.known_event(self.schema, event_id):
            raise EndpointError(f"The business event '{event_id}' is not in the catalog.")
        endpoints = self.storage.endpoints()
        if endpoint not in endpoints:
            raise EndpointError(f"The endpoint '{endpoint}' does not exist.")
        legal_entity = legal_entity.lower()
        if legal_entity and self.storage.get("LegalEntities", legal_entity) is None:
            raise EndpointError(f"The legal entity '{legal_entity}' does not exist.")
        same = [a for a in self.storage.activations()
                if a["eventId"] == event_id and a["legalEntity"] == legal_entity and a["active"]]
        if len(same) >= MAX_ENDPOINTS_PER_EVENT:
            raise EndpointError(f"At most {MAX_ENDPOINTS_PER_EVENT} endpoints per event and legal entity.")
        payload = events.test_message(event_id, legal_entity, 0, initiating)
        test = Outbound(endpoint, event_id, wire.dumps(payload), self._properties(event_id, legal_entity, payload),
                        payload["EventId"])
        try:
            await self.sender.send(endpoints[endpoint], test)
        except DeliveryFailed as exc:
            raise EndpointError(f"The test message to endpoint '{endpoint}' failed: {exc}") from exc
        activation_id = self.storage.add_activation(event_id, legal_entity, endpoint)
        self._index = None
        return {"id": activation_id, "eventId": event_id, "legalEntity": legal_entity, "endpoint": endpoint,
                "active": True}

    def set_active(self, activation_id: int, active: bool) -> bool:
        self._index = None
        return self.storage.set_activation_active(activation_id, active)

    def deactivate(self, activation_id: int) -> bool:
        self._index = None
        return self.storage.delete_activation(activation_id)

    def _routes(self) -> dict[str, list[tuple[str, str]]]:
        if self._index is None:
            index: dict[str, list[tuple[str, str]]] = {}
            for a in self.storage.activations():
                if a["active"]:
                    index.setdefault(a["eventId"], []).append((a["legalEntity"], a["endpoint"]))
            self._index = index
        return self._index

    # ---- publishing (called after commit, on the event loop) --------------------------------------------
    def publish(self, changes: list[Change]) -> None:
        """Queue the events of committed changes. Never raises: the data is committed either way."""
        try:
            self._publish(changes)
        except Exception:
            log.exception("building events for %d committed change(s) failed", len(changes))

    def _publish(self, changes: list[Change]) -> None:
        routes = self._routes()
        if not routes:
            return
        for change in changes:
            for event_id in events.events_for(change):
                targets = [ep for le, ep in routes.get(event_id, ()) if le in ("", change.company)]
                if not targets:
                    continue
                payload = self._payload(event_id, change)
                body = events.wcf_json(payload) if event_id not in events.BUSINESS_EVENTS else wire.dumps(payload)
                message_id = payload.get("EventId") or payload["OperationId"]
                props = self._properties(event_id, change.company, payload)
                for endpoint in dict.fromkeys(targets):
                    self._enqueue(Outbound(endpoint, event_id, body, props, message_id))

    def _payload(self, event_id: str, change: Change) -> dict[str, Any]:
        defn = events.BUSINESS_EVENTS.get(event_id)
        if defn is None:
            return events.data_event(self.schema, change)
        # Increasing with gaps, like F&O's ControlNumber.
        self._published += 1
        control = self.storage.next_number("control", step=1 + self._published % 4)
        return events.business_event(defn, change, control)

    @staticmethod
    def _properties(event_id: str, company: str, payload: dict[str, Any]) -> dict[str, str]:
        category = events.BUSINESS_EVENTS[event_id].category if event_id in events.BUSINESS_EVENTS else "Data event"
        return {"BusinessEventId": event_id, "BusinessEventCategory": category, "LegalEntity": company.upper(),
                "EventId": str(payload.get("EventId") or payload.get("OperationId"))}

    def _enqueue(self, out: Outbound) -> None:
        queue = self._queues.get(out.endpoint)
        if queue is None:
            queue = self._queues[out.endpoint] = asyncio.Queue()
            self._workers[out.endpoint] = asyncio.get_running_loop().create_task(self._work(out.endpoint, queue))
        queue.put_nowait(out)

    async def _work(self, endpoint: str, queue: asyncio.Queue[Outbound]) -> None:
        while True:
            out = await queue.get()
            try:
                await self._deliver(out)
            except Exception:  # never let one payload kill the endpoint's worker
                log.exception("delivery to %s crashed", endpoint)
            finally:
                queue.task_done()

    async def _deliver(self, out: Outbound) -> None:
        config = self.storage.endpoints().get(out.endpoint)
        if config is None:
            self._error(out, "The endpoint was deleted before delivery.", 0)
            return
        attempts = 0
        last = ""
        while attempts <= self.retries:
            if attempts:
                await asyncio.sleep(self.retry_delay)
            attempts += 1
            try:
                await self.sender.send(config, out)
                self.delivered += 1
                return
            except DeliveryFailed as exc:
                last = str(exc)
                log.warning("delivery of %s to %s failed (attempt %d): %s", out.event_id, out.endpoint, attempts, last)
        self._error(out, last, attempts)

    def _error(self, out: Outbound, error: str, attempts: int) -> None:
        self.storage.add_error(out.endpoint, out.event_id, out.body, error, attempts,
                               datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def resend(self, error_id: int) -> bool:
        err = self.storage.take_error(error_id)
        if err is None:
            return False
        payload = wire.loads(err["payload"])
        message_id = str(payload.get("EventId") or payload.get("OperationId") or error_id)
        company = str(payload.get("BusinessEventLegalEntity", ""))
        self._enqueue(Outbound(err["endpoint"], err["eventId"], err["payload"],
                               self._properties(err["eventId"], company, payload), message_id))
        return True

    async def drain(self) -> None:
        """Wait until every queued payload has been delivered or moved to the errors list."""
        for queue in list(self._queues.values()):
            await queue.join()

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sender.close()
