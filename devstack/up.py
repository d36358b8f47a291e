"""`make run`: the whole local stack on its default ports, until Ctrl-C.

Azurite (Table Storage, state kept in .devstack/azurite), the Service Bus emulator (in memory),
the Dataverse and F&O simulators (seeded, state in .devstack/*.sqlite), and the local Functions
host serving function_app.py with local.settings.json (or the sample). Ports are the ones the
sample settings point at; a port already in use stops `up` with a clear message.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from devstack.azurite import azurite_table
from devstack.processes import ROOT, ManagedProcess, ProcessFailed, port_open, python_module
from devstack.servicebus.launch import emulator_process

log = logging.getLogger("devstack.up")
STATE = ROOT / ".devstack"


@dataclass(frozen=True)
class Part:
    name: str
    port: int
    make: Callable[[], ManagedProcess]
    where: str


def parts(fresh: bool) -> list[Part]:
    seed = ["--seed", "on"]
    dataverse_db = STATE / "dataverse.sqlite"
    fno_db = STATE / "fno.sqlite"
    if fresh:
        for db in (dataverse_db, fno_db):
            db.unlink(missing_ok=True)
    return [
        Part("azurite", 10002, lambda: azurite_table(10002, location=STATE / "azurite", in_memory=False),
             "Table Storage  http://127.0.0.1:10002/devstoreaccount1"),
        Part("servicebus", 5672, lambda: emulator_process(port=5672),
             "Service Bus    sb://127.0.0.1:5672 (emulator, in memory: queues start empty)"),
        Part("dataverse", 7101,
             lambda: ManagedProcess("dataverse", python_module("devstack.dataverse", "--port", "7101",
                                                               "--db", str(dataverse_db), *seed), port=7101),
             "Dataverse      http://127.0.0.1:7101/api/data/v9.2/"),
        Part("fno", 7102,
             lambda: ManagedProcess("fno", python_module("devstack.fno", "--port", "7102", "--db", str(fno_db), *seed),
                                    port=7102),
             "F&O            http://127.0.0.1:7102/data/"),
        Part("host", 7071, lambda: ManagedProcess("host", python_module("devstack.host", "--port", "7071"), port=7071),
             "Functions host http://127.0.0.1:7071/api/health"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.up", description="Start the whole local stack")
    parser.add_argument("--fresh", action="store_true", help="drop the simulators' databases and re-seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    STATE.mkdir(exist_ok=True)
    stack = parts(args.fresh)
    busy = [f"{p.name} (port {p.port})" for p in stack if port_open("127.0.0.1", p.port)]
    if busy:
        log.error("ports already in use: %s. Is the stack already running? Stop it first.", ", ".join(busy))
        return 1
    started: list[ManagedProcess] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for part in stack:
            log.info("starting %s ...", part.name)
            started.append(part.make().start(ready_timeout=60))
        log.info("\nThe local stack is up (logs in %s):", STATE / "logs")
        for part in stack:
            log.info("  %s", part.where)
        log.info("Press Ctrl-C to stop.")
        while not stop.is_set():
            dead = [p for p in started if not p.running]
            if dead:
                log.error("%s stopped unexpectedly:\n%s", dead[0].name, dead[0].log_tail())
                return 1
            stop.wait(1.0)
        return 0
    except ProcessFailed as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        log.info("stopping ...")
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
