"""Health: version and whether the engine's dependencies answer, for `GET /api/health`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel

from core import __version__
from core.settings import Settings
from core.store.probes import probe_servicebus, probe_table_storage

PROBE_TIMEOUT_S = 5.0


class DependencyHealth(BaseModel):
    reachable: bool
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    status: Literal["healthy", "degraded"]
    version: str
    table_storage: DependencyHealth
    service_bus: DependencyHealth


async def _timed(probe: Callable[[], Awaitable[None]]) -> DependencyHealth:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
    except TimeoutError:
        error: str | None = f"no answer within {PROBE_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure means "not reachable"; the type and text say why
        error = f"{type(exc).__name__}: {exc}"[:500]
    else:
        error = None
    latency = round((time.perf_counter() - start) * 1000, 1)
    return DependencyHealth(reachable=error is None, latency_ms=latency, error=error)


async def check_health(settings: Settings) -> HealthReport:
    tables, bus = await asyncio.gather(
        _timed(lambda: probe_table_storage(settings.table_storage_connection.get_secret_value())),
        _timed(lambda: probe_servicebus(settings.servicebus_connection.get_secret_value(), settings.changes_queue)),
    )
    status: Literal["healthy", "degraded"] = "healthy" if tables.reachable and bus.reachable else "degraded"
    return HealthReport(status=status, version=__version__, table_storage=tables, service_bus=bus)
