"""`python -m devstack.servicebus`: run the emulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from devstack.servicebus.server import serve
from devstack.servicebus.topology import DEFAULT_TOPOLOGY, TopologyError, load_topology

log = logging.getLogger("devstack.servicebus")


def watch_parent(loop: asyncio.AbstractEventLoop, parent_pid: int, main_task: asyncio.Task) -> None:
    """A test run killed before its teardown must not leave emulators behind."""
    if os.getppid() != parent_pid:
        log.warning("parent process %d is gone; stopping", parent_pid)
        main_task.cancel()
        return
    loop.call_later(1.0, watch_parent, loop, parent_pid, main_task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.servicebus", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672)")
    parser.add_argument(
        "--config", default=str(DEFAULT_TOPOLOGY), help="topology file in the official emulator's JSON format"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        topology = load_topology(args.config)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        if args.parent_pid:
            watch_parent(loop, args.parent_pid, task)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(topology, args.host, args.port)

    try:
        asyncio.run(run())
    except OSError as exc:  # typically the port is taken
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
