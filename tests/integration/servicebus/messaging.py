"""Sync SDK helpers the emulator tests share."""

from __future__ import annotations

import time

from azure.servicebus import ServiceBusClient, ServiceBusMessage


def send(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(list(messages))


def receive(receiver, count: int = 1, wait: float = 3.0) -> list:  # type: ignore[no-untyped-def]
    """Up to `count` messages, waiting at most about `wait` seconds in all."""
    got: list = []
    deadline = time.monotonic() + wait
    while len(got) < count and time.monotonic() < deadline:
        got += receiver.receive_messages(max_message_count=count - len(got), max_wait_time=1)
    return got
