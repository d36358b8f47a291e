"""`python -m devstack.servicebus`: run the emulator in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from devstack.servicebus.server import serve
from devstack.servicebus.topology import DEFAULT_TOPOLOGY, TopologyError, load_topology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.servicebus", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672)")
    parser.add_argument(
        "--config", default=str(DEFAULT_TOPOLOGY), help="topology file in the official emulator's JSON format"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # proton logs "no such channel" when the SDK detaches links after ending their session: harmless.
    try:
        topology = load_topology(args.config)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await serve(topology, args.host, args.port)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
