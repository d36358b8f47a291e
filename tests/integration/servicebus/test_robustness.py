"""Bad peers must not take the emulator down: garbage bytes, broken frames, clients vanishing in the
middle of a transfer. Each test ends by proving the emulator still serves the real SDK."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.exceptions import MessageLockLostError
from proton import Delivery, Message

from tests.integration.servicebus.rawamqp import (
    BATCH_FORMAT,
    RawClient,
    split_frames,
    split_transfer,
    with_message_format,
)

pytestmark = pytest.mark.integration


def still_serves(emulator, queue: str) -> None:
    assert emulator.process.running, f"the emulator died:\n{emulator.log_tail()}"
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage("still alive"))
        with client.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
            bodies = []
            deadline = time.monotonic() + 5
            while "still alive" not in bodies and time.monotonic() < deadline:
                bodies += [str(m) for m in receiver.receive_messages(max_message_count=10, max_wait_time=1)]
            assert "still alive" in bodies


def address(emulator, queue: str) -> str:
    return f"amqps://127.0.0.1:{emulator.port}/{queue}"


def raw_socket(emulator) -> socket.socket:
    return socket.create_connection(("127.0.0.1", emulator.port), timeout=5)


def test_garbage_without_protocol_header(servicebus_emulator, servicebus_queue):
    with raw_socket(servicebus_emulator) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4)
        sock.settimeout(5)
        assert sock.recv(1024) is not None  # the emulator answers (header / close) or closes
    still_serves(servicebus_emulator, servicebus_queue("plain"))


def test_malformed_frames_after_a_valid_header(servicebus_emulator, servicebus_queue):
    cases = [
        b"AMQP\x03\x01\x00\x00" + b"\x00\x00\x00\x04\x02\x01\x00\x00",  # frame size below the minimum
        b"AMQP\x03\x01\x00\x00" + b"\xff\xff\xff\xff\x02\x01\x00\x00" + b"x" * 100,  # absurd frame size
        b"AMQP\x00\x01\x00\x00" + b"\x00\x00\x00\x10\x02\x00\x00\x00" + b"\x00\x53\x10\xc0\xff\xff\xff\xff",  # bad open
    ]
    for raw in cases:
        with raw_socket(servicebus_emulator) as sock:
            sock.sendall(raw)
            sock.settimeout(1)
            try:
                while sock.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    still_serves(servicebus_emulator, servicebus_queue("plain"))


def test_undecodable_performative_inside_an_open_connection(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    # A transfer frame whose performative is a list announcing more bytes than it has.
    client.send_raw(b"\x00\x00\x00\x14\x02\x00\x00\x00" + b"\x00\x53\x14\xc0\xff\x05\x43\x43\xa0\x01\x01\x43")
    time.sleep(0.3)
    client.close()
    still_serves(servicebus_emulator, queue)


def test_client_disconnecting_in_the_middle_of_a_multi_frame_transfer(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    _delivery, raw = client.transfer(Message(body=b"x" * 20_000).encode())
    frames = split_transfer(split_frames(raw)[-1], 1000)
    assert len(frames) > 10
    client.send_raw(b"".join(frames[:5]) + frames[5][:7])  # a few frames and half a frame header
    client.close()
    time.sleep(0.3)
    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as sb,
        sb.get_queue_receiver(queue) as receiver,
    ):
        assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []  # nothing half-stored
    still_serves(servicebus_emulator, queue)


def test_client_disconnecting_in_the_middle_of_a_frame(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    _delivery, raw = client.transfer(Message(body=b"y" * 3000).encode())
    client.send_raw(raw[: len(raw) // 2])
    client.close()
    still_serves(servicebus_emulator, queue)


def test_the_message_format_on_the_transfer_decides_what_a_batch_is(servicebus_emulator, servicebus_queue):
    """A hand-made batch (format 0x80013700, one data section per message) is split; a batch whose data
    sections are not AMQP messages is rejected with a decode error, and the connection lives on."""
    queue = servicebus_queue("plain")
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    inner = [Message(body=f"part-{i}", id=f"p{i}").encode() for i in range(3)]
    envelope = Message(body=None)
    batch_bytes = b"".join(b"\x00\x53\x75\xb0" + len(m).to_bytes(4, "big") + m for m in inner)
    good, raw = client.transfer(bytes(envelope.encode()) + batch_bytes, tag=b"good")
    client.send_raw(b"".join(with_message_format(f, BATCH_FORMAT) for f in split_frames(raw)))
    client.exchange(lambda: good.remote_state != 0)
    assert good.remote_state == Delivery.ACCEPTED

    # The same batch in 40-byte frames: only the first transfer frame carries the format.
    chunked, raw = client.transfer(bytes(envelope.encode()) + batch_bytes, tag=b"chunked")
    [transfer] = [f for f in split_frames(raw) if f[8:11] == b"\x00\x53\x14"]
    client.send_raw(b"".join(split_transfer(with_message_format(transfer, BATCH_FORMAT), 40)))
    client.exchange(lambda: chunked.remote_state != 0)
    assert chunked.remote_state == Delivery.ACCEPTED

    bad, raw = client.transfer(b"\x00\x53\x75\xa0\x05hello", tag=b"bad")
    client.send_raw(b"".join(with_message_format(f, BATCH_FORMAT) for f in split_frames(raw)))
    client.exchange(lambda: bad.remote_state != 0)
    assert bad.remote_state == Delivery.REJECTED
    assert bad.remote.condition.name == "amqp:decode-error"
    client.close()

    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string) as sb,
        sb.get_queue_receiver(queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver,
    ):
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:
            got += receiver.receive_messages(max_message_count=6, max_wait_time=1)
        assert [m.message_id for m in got] == ["p0", "p1", "p2"] * 2
    still_serves(servicebus_emulator, queue)


def test_a_vanished_client_releases_its_session_lock(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("changes")  # LockDuration 5 s: only the disconnect can free it sooner
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    client.lock_session(address(servicebus_emulator, queue), "orphaned")
    client.close()  # no detach, no end, no close: the socket just goes away
    time.sleep(0.3)
    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as sb,
        sb.get_queue_receiver(queue, session_id="orphaned") as receiver,
    ):
        assert receiver.session.get_state() is None  # would raise SessionCannotBeLockedError if still held


def test_cbs_answers_put_token_for_any_token_and_refuses_other_operations(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    ok = client.request(
        "$cbs",
        Message(
            body="not a real token",
            properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": queue},
        ),
    )
    assert (ok.properties["status-code"], ok.correlation_id) == (200, "raw-request-1")
    refused = client.request("$cbs", Message(body="x", properties={"operation": "delete-token"}))
    assert refused.properties["status-code"] == 400
    client.close()


def test_management_errors_carry_status_and_condition(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    client = RawClient(servicebus_emulator.port, address(servicebus_emulator, queue))
    client.attach()
    unknown = client.request(f"{queue}/$management", Message(body={}, properties={"operation": "com.microsoft:nope"}))
    assert unknown.properties["statusCode"] == 400
    assert "com.microsoft:nope" in unknown.properties["statusDescription"]
    missing = client.request(
        f"{queue}/$management", Message(body={}, properties={"operation": "com.microsoft:peek-message"})
    )
    assert missing.properties["statusCode"] == 400
    assert "from-sequence-number" in missing.properties["statusDescription"]
    node = client.sender_to(f"{queue}/$management")
    garbage = node.delivery(b"garbage")
    node.stream(b"\x00\x53\x77\xd1\xff\xff")  # an AMQP value section that is cut short
    node.advance()
    client.exchange(lambda: garbage.remote_state != 0)
    assert garbage.remote_state == Delivery.REJECTED
    assert garbage.remote.condition.name == "amqp:decode-error"
    client.close()
    still_serves(servicebus_emulator, queue)


def test_renewing_or_settling_an_unknown_lock_raises_lock_lost(servicebus_emulator, servicebus_queue):
    queue = servicebus_queue("plain")
    with (
        ServiceBusClient.from_connection_string(servicebus_emulator.connection_string, retry_total=0) as sb,
        sb.get_queue_receiver(queue) as receiver,
    ):
        with pytest.raises(MessageLockLostError):
            receiver._renew_locks(str(uuid.uuid4()))  # the SDK's own renew-lock request, any unknown token
        with pytest.raises(MessageLockLostError):
            receiver._settle_message_via_mgmt_link("completed", [str(uuid.uuid4())])
