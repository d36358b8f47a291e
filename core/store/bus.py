"""Service Bus clients that share one TLS context.

Without one, the SDK builds a fresh SSL context (and loads the whole CA bundle) for every
connection it opens, even towards the plain-AMQP emulator: about 20 ms of CPU each, which was most
of the cost of opening a receiver. One context, made once, serves every client in the process.

The connection is a connection string (keys, or the emulator's) or an identity-based one
(`FullyQualifiedNamespace=...`, from SERVICEBUS_CONNECTION__fullyQualifiedNamespace: core/store/credentials.py).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import certifi
from azure.servicebus.aio import ServiceBusClient

from core.store.credentials import connection_parts, credential_of


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The SDK's own default (certifi's CA bundle, server certificates verified), made once."""
    return ssl.create_default_context(cafile=certifi.where())


def service_bus_client(connection_string: str, **options: Any) -> ServiceBusClient:
    parts = connection_parts(connection_string)
    namespace = parts.get("fullyqualifiednamespace")
    if namespace:
        return ServiceBusClient(namespace, credential_of(parts), ssl_context=tls_context(), **options)
    return ServiceBusClient.from_connection_string(connection_string, ssl_context=tls_context(), **options)
