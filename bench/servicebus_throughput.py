"""Throughput and memory of the project's Service Bus emulator, driven by the real azure-servicebus SDK.

    .venv/bin/python -m bench.servicebus_throughput [--messages 5000] [--memory-messages 100000]

Prints one JSON object:
- send_single: one message per send call (each waits for the broker's `accepted`);
- send_batched: ServiceBusMessageBatch of `--batch` messages per send call;
- receive_complete: peek-lock receive + complete with `--receivers` concurrent receivers, each in its
  own process with its own connection (so the SDK's client-side CPU is not one GIL);
- memory: emulator RSS (VmRSS from /proc/<pid>/status) before and after each round of sending and
  completing `--round` messages, `--memory-messages` in total (0 skips it);
- emulator_cpu_share: the emulator's CPU seconds / wall seconds per phase; near 1.0 means the
  emulator's single event-loop thread was the bottleneck, lower means the clients were.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage

from devstack.servicebus.launch import connection_string, emulator_process

QUEUE = "bench"


def topology() -> dict[str, Any]:
    props = {"LockDuration": "PT1M", "MaxDeliveryCount": 10, "RequiresSession": False}
    return {
        "UserConfig": {
            "Namespaces": [{"Name": "sbemulatorns", "Queues": [{"Name": QUEUE, "Properties": props}]}],
            "Logging": {"Type": "File"},
        }
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> Phase:
        self.t0, self.c0 = time.perf_counter(), cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu_share = round((cpu_seconds(self.pid) - self.c0) / self.seconds, 2)

    def result(self, count: int) -> dict[str, Any]:
        return {
            "messages": count,
            "seconds": round(self.seconds, 3),
            "msg_per_s": round(count / self.seconds, 1),
            "emulator_cpu_share": self.cpu_share,
        }


def send_single(sender: Any, count: int, body: bytes) -> None:
    for _ in range(count):
        sender.send_messages(ServiceBusMessage(body))


def send_batched(sender: Any, count: int, body: bytes, batch_size: int) -> None:
    sent = 0
    while sent < count:
        batch = sender.create_message_batch()
        n = min(batch_size, count - sent)
        for _ in range(n):
            batch.add_message(ServiceBusMessage(body))
        sender.send_messages(batch)
        sent += n


def _receiver(conn: str, shared: Any, total: int, ready: Any) -> None:
    with (
        ServiceBusClient.from_connection_string(conn) as client,
        client.get_queue_receiver(QUEUE, prefetch_count=100) as receiver,
    ):
        ready.wait()
        idle = 0
        while shared.value < total and idle < 10:  # 10 empty seconds: something is lost, stop
            messages = receiver.receive_messages(max_message_count=50, max_wait_time=1)
            idle = 0 if messages else idle + 1
            for message in messages:
                receiver.complete_message(message)
            with shared.get_lock():
                shared.value += len(messages)


def timed_receive(conn: str, pid: int, total: int, receivers: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    shared = ctx.Value("q", 0)
    ready = ctx.Event()
    procs = [ctx.Process(target=_receiver, args=(conn, shared, total, ready)) for _ in range(receivers)]
    for p in procs:
        p.start()
    time.sleep(4)  # connections and links up before the clock starts
    with Phase(pid) as phase:
        ready.set()
        # Stop the clock when the last message is completed, not when the receivers have closed.
        while shared.value < total and any(p.is_alive() for p in procs):
            time.sleep(0.005)
    for p in procs:
        p.join()
    result = phase.result(shared.value)
    result["receivers"] = receivers
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="messages per throughput phase")
    parser.add_argument("--single", type=int, default=500, help="messages for the one-per-call send phase")
    parser.add_argument("--size", type=int, default=1024, help="body size in bytes")
    parser.add_argument("--batch", type=int, default=100, help="messages per batch")
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--memory-messages", type=int, default=0, help="e.g. 100000; 0 skips the memory check")
    parser.add_argument("--round", type=int, default=10000, help="messages per memory round")
    args = parser.parse_args()
    body = os.urandom(args.size // 2).hex().encode()[: args.size]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topology.json"
        path.write_text(json.dumps(topology()))
        proc = emulator_process(config=path, log_level="WARNING", name="servicebus-bench").start()
        try:
            assert proc.proc is not None and proc.port is not None
            pid, conn = proc.proc.pid, connection_string(proc.port)
            report: dict[str, Any] = {"message_bytes": args.size, "emulator_pid": pid}

            with ServiceBusClient.from_connection_string(conn) as client, client.get_queue_sender(QUEUE) as sender:
                send_single(sender, 10, body)  # connection and link up before the clock starts
                with Phase(pid) as phase:
                    send_single(sender, args.single, body)
                report["send_single"] = phase.result(args.single)
                with Phase(pid) as phase:
                    send_batched(sender, args.messages, body, args.batch)
                report["send_batched"] = {**phase.result(args.messages), "batch_size": args.batch}

            queued = 10 + args.single + args.messages
            report["receive_complete"] = timed_receive(conn, pid, queued, args.receivers)

            if args.memory_messages:
                rounds = []
                baseline = rss_kb(pid)
                done = 0
                while done < args.memory_messages:
                    n = min(args.round, args.memory_messages - done)
                    with (
                        ServiceBusClient.from_connection_string(conn) as client,
                        client.get_queue_sender(QUEUE) as sender,
                    ):
                        send_batched(sender, n, body, args.batch)
                    after_send = rss_kb(pid)
                    timed_receive(conn, pid, n, args.receivers)
                    done += n
                    rounds.append({"messages_total": done, "rss_kb_queued": after_send, "rss_kb_drained": rss_kb(pid)})
                    print(f"memory round: {rounds[-1]}", file=sys.stderr, flush=True)
                drained = [r["rss_kb_drained"] for r in rounds]
                report["memory"] = {
                    "messages": done,
                    "rss_kb_before": baseline,
                    "rss_kb_after": drained[-1],
                    "rss_kb_after_first_round": drained[0],
                    "growth_after_first_round_kb": drained[-1] - drained[0],
                    "rounds": rounds,
                }
        finally:
            proc.stop()
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
