"""The local Functions host: indexes the app once, serves HTTP triggers, pumps Service Bus
triggers and runs timers, and shuts down cleanly (SIGINT/SIGTERM via uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import azure.functions as func
import uvicorn

from devstack.host.config import HostConfig, load_host_config
from devstack.host.http import HttpFront
from devstack.host.indexing import FunctionSpec, ServiceBusTrigger, TimerTrigger, index_app, load_app
from devstack.host.invocation import Invoker
from devstack.host.outputs import OutputSender
from devstack.host.servicebus import QueuePump
from devstack.host.timers import Clock, SystemClock, TimerRunner

log = logging.getLogger("devstack.host")


@dataclass
class FunctionHost:
    """Everything but the socket: build with `prepare`, serve `asgi` with any ASGI server."""

    config: HostConfig
    specs: list[FunctionSpec]
    clock: Clock = field(default_factory=SystemClock)
    invoker: Invoker = field(init=False)
    pumps: list[QueuePump] = field(init=False, default_factory=list)
    timers: list[TimerRunner] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        # Like the Python worker: sync functions run on a pool (PYTHON_THREADPOOL_THREAD_COUNT).
        threads = int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "0")) or min(32, (os.cpu_count() or 1) + 4)
        self.invoker = Invoker(OutputSender(), ThreadPoolExecutor(threads, thread_name_prefix="function"))
        self.asgi = HttpFront(self.specs, self.config, self.invoker, lifespan=self)

    @classmethod
    def prepare(cls, app_target: str, settings_path: Path, host_json: Path = Path("host.json"),
                clock: Clock | None = None) -> FunctionHost:
        """Apply the settings, import and index the app. Raises IndexingError / HostConfigError."""
        config = load_host_config(settings_path, host_json)
        app: func.FunctionApp = load_app(app_target)
        return cls(config, [s for s in index_app(app) if not disabled(s.name)], clock or SystemClock())

    async def startup(self) -> None:
        for spec in self.specs:
            if isinstance(spec.trigger, ServiceBusTrigger):
                pump = QueuePump(spec, self.config.servicebus, self.invoker)
                await pump.start()
                self.pumps.append(pump)
            elif isinstance(spec.trigger, TimerTrigger):
                runner = TimerRunner(spec, self.invoker, self.clock)
                runner.start()
                self.timers.append(runner)
        log.info("host started: %d functions (%d queue pumps, %d timers)",
                 len(self.specs), len(self.pumps), len(self.timers))

    async def shutdown(self) -> None:
        log.info("host stopping: finishing invocations in flight")
        await asyncio.gather(*(t.stop() for t in self.timers), *(p.stop() for p in self.pumps))
        await self.invoker.outputs.close()
        await _close_app_clients()
        self.invoker.executor.shutdown(wait=True)
        log.info("host stopped")

    def describe(self, base_url: str) -> list[str]:
        """One line per function, as `func start` prints them."""
        lines = []
        for spec in self.specs:
            trigger = spec.trigger
            if hasattr(trigger, "route"):
                methods = ",".join(sorted(trigger.methods))  # type: ignore[union-attr]
                lines.append(f"  {spec.name}: [{methods}] {base_url}/{self.config.route_prefix}/"
                             f"{trigger.route.template}  ({trigger.auth_level})")  # type: ignore[union-attr]
            elif isinstance(trigger, ServiceBusTrigger):
                mode = " sessions" if trigger.sessions else ""
                lines.append(f"  {spec.name}: serviceBusTrigger queue={trigger.queue_name}{mode}")
            elif isinstance(trigger, TimerTrigger):
                lines.append(f"  {spec.name}: timerTrigger schedule={trigger.schedule.expression}")
        return lines


def disabled(name: str) -> bool:
    """Whether app setting `AzureWebJobs.<name>.Disabled` turns the function off, as the Functions runtime reads it
    (true or 1): it is not indexed, so no route, queue pump or timer runs it."""
    value = os.environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower()
    if value in ("true", "1"):
        log.info("function %s is disabled (AzureWebJobs.%s.Disabled)", name, name)
        return True
    return False


async def _close_app_clients() -> None:
    """The clients the app made (Table Storage, Service Bus, HTTP), when the app keeps them in
    functions.runtime (function_app.py does): closed once no invocation runs any more. The Functions host has no
    such hook (in Azure the process ends with them); here a stop then leaves nothing unclosed behind."""
    close = getattr(sys.modules.get("functions.runtime"), "close_runtime", None)
    if close is None:
        return
    try:
        await close()
    except Exception as error:
        log.warning("host: closing the app's clients failed (%s)", type(error).__name__)


def serve(host: FunctionHost, port: int, bind: str = "127.0.0.1") -> None:
    """Serve until SIGINT/SIGTERM; uvicorn's graceful shutdown runs the host's shutdown."""
    base_url = f"http://{bind}:{port}"
    for line in ["Functions:", *host.describe(base_url)]:
        log.info(line)
    config = uvicorn.Config(host.asgi, host=bind, port=port, lifespan="on", log_level="warning",
                            timeout_graceful_shutdown=30)
    # uvicorn re-raises the stop signal after its graceful shutdown; with these handlers in place that
    # re-raise is a no-op, so a clean stop exits 0 instead of dying by the signal.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: None)
    uvicorn.Server(config).run()
