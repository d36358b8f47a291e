"""`make run`: the whole local stack on its default ports, until Ctrl-C.

Azurite (Table Storage, state kept in .devstack/azurite), the Service Bus emulator (in memory),
the Dataverse and F&O simulators (seeded, state in .devstack/*.sqlite), and the local Functions
host serving function_app.py with local.settings.json (or the sample). Ports are the ones the
sample settings point at; a port already in use stops `up` with a clear message.

The host deploys the maps at start (functions/deploy.py: webhook steps in Dataverse, data-event
activations in F&O, both pointing at APP_URL with INGEST_KEY); `up` waits until both are registered,
then prints where to look and a change to try.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from devstack.azurite import azurite_table
from devstack.dataverse.auth import make_token
from devstack.host.config import read_values, resolve_settings_path
from devstack.processes import ROOT, ManagedProcess, ProcessFailed, port_open, python_module
from devstack.servicebus.launch import emulator_process
from devstack.virtualtables import local_demo

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


DATAVERSE = "http://127.0.0.1:7101"
FNO = "http://127.0.0.1:7102"
HOST = "http://127.0.0.1:7071"
ENDPOINT_NAME = "dw-oss ingest"  # core.ops.deploy's names; up only reads what the host registered
FNO_ENDPOINT_NAME = "dw-oss-ingest"
LOCAL_TOKEN = make_token("6c0c4d4e-2f4a-4c39-9b3a-5d1f0a7e9c11", name="make run")


def deployment_state(dataverse: str = DATAVERSE, fno: str = FNO) -> tuple[bool, int]:
    """(Dataverse webhook endpoint registered, number of F&O data-event activations on ours)."""
    headers = {"Authorization": f"Bearer {LOCAL_TOKEN}", "Accept": "application/json"}
    try:
        endpoints = httpx.get(f"{dataverse}/api/data/v9.2/serviceendpoints", headers=headers, timeout=5,
                              params={"$filter": f"name eq '{ENDPOINT_NAME}'", "$select": "name"}).json()
        activations = httpx.get(f"{fno}/admin/activations", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False, 0
    ours = [a for a in activations if a.get("endpoint") == FNO_ENDPOINT_NAME and a.get("active")]
    return bool(endpoints.get("value")), len(ours)


def wait_for_deployment(settings: dict[str, str], stop: threading.Event, timeout: float = 120.0,
                        dataverse: str = DATAVERSE, fno: str = FNO) -> bool:
    if settings.get("DEPLOY_ON_START", "true").lower() == "false":
        log.info("DEPLOY_ON_START is false: nothing registered; POST %s/api/manage/v1/deploy deploys on request", HOST)
        return False
    if not settings.get("APP_URL") or not settings.get("INGEST_KEY"):
        log.warning("APP_URL or INGEST_KEY unset: the host registers no webhooks or events (live sync is off)")
        return False
    log.info("waiting for the host to deploy the maps (webhook steps in Dataverse, events in F&O) ...")
    deadline = time.monotonic() + timeout
    last = (False, 0)
    while time.monotonic() < deadline and not stop.is_set():
        state = deployment_state(dataverse, fno)
        # Done when both sides show ours and F&O's count has stopped growing (activations go one by one).
        if state[0] and state[1] and state == last:
            log.info("deployed: Dataverse webhook endpoint %r, %d F&O data events activated", ENDPOINT_NAME, state[1])
            return True
        last = state
        stop.wait(2.0)
    log.warning("the deployment did not show up in %.0f s: see the host log (.devstack/logs/host.log) "
                "or POST %s/api/manage/v1/deploy with the master key for the report", timeout, HOST)
    return False


def console_url(settings: dict[str, str]) -> str:
    """The operator console with the local master key: the page keeps the key in the tab and out of the address."""
    return f"{HOST}/api/console?code={quote(settings.get('DEVHOST_MASTER_KEY', 'local-master-key'), safe='')}"


def where_to_look(settings: dict[str, str]) -> list[str]:
    function_key = settings.get("DEVHOST_FUNCTION_KEY", "local-function-key")
    master_key = settings.get("DEVHOST_MASTER_KEY", "local-master-key")
    return [
        "Where to look:",
        f"  console       {console_url(settings)}   (open it in a browser)",
        f"  health        curl {HOST}/api/health",
        f"  maps          curl -H 'x-functions-key: {function_key}' {HOST}/api/maps",
        f"  errors        curl -H 'x-functions-key: {master_key}' {HOST}/api/manage/v1/errors",
        f"  activity      curl -H 'x-functions-key: {master_key}' {HOST}/api/manage/v1/activity",
        f"  re-deploy     curl -X POST -H 'x-functions-key: {master_key}' {HOST}/api/manage/v1/deploy",
        f"  Dataverse     {DATAVERSE}/api/data/v9.2/  (any bearer token: -H 'Authorization: Bearer local')",
        f"  F&O           {FNO}/data/  and its events admin {FNO}/admin/activations",
        "Try it: rename customer US-001 in F&O, then read the account in Dataverse:",
        f"  curl -X PATCH -H 'Authorization: Bearer local' -H 'Content-Type: application/json' "
        f"-d '{{\"OrganizationName\": \"Renamed in F&O\"}}' "
        f"\"{FNO}/data/CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')\"",
        f"  curl -H 'Authorization: Bearer local' "
        f"'{DATAVERSE}/api/data/v9.2/accounts?$select=name,modifiedon&$filter=accountnumber%20eq%20%27US-001%27'",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.up", description="Start the whole local stack")
    parser.add_argument("--fresh", action="store_true", help="drop the simulators' databases and re-seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the deployment polls are not news
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
        settings = read_values(resolve_settings_path(None))
        wait_for_deployment(settings, stop)
        demo = local_demo(settings, f"{DATAVERSE}/api/data/v9.2/", HOST, LOCAL_TOKEN, fresh=args.fresh)
        log.info("\n%s", "\n".join([*where_to_look(settings), "", *demo]))
        log.info("\nOperator console: %s\nPress Ctrl-C to stop.", console_url(settings))
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
