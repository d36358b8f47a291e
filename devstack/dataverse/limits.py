"""Service protection limits per caller (reference §2.10): requests and combined execution time in a
sliding window, and concurrent requests. Over a limit: 429 with Retry-After and the documented code."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from devstack.dataverse.errors import (
    CONCURRENCY_EXCEEDED,
    EXECUTION_TIME_EXCEEDED,
    REQUESTS_EXCEEDED,
    DataverseError,
)


@dataclass(frozen=True)
class Limits:
    requests: int = 6000
    window_seconds: float = 300.0
    concurrency: int = 52
    execution_seconds: float = 1200.0


@dataclass
class _CallerState:
    requests: deque[float] = field(default_factory=deque)
    executions: deque[tuple[float, float]] = field(default_factory=deque)  # (finished at, seconds)
    in_flight: int = 0


class ServiceProtection:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.callers: dict[str, _CallerState] = {}

    def _trim(self, state: _CallerState, now: float) -> None:
        horizon = now - self.limits.window_seconds
        while state.requests and state.requests[0] <= horizon:
            state.requests.popleft()
        while state.executions and state.executions[0][0] <= horizon:
            state.executions.popleft()

    def enter(self, caller: str) -> float:
        """Admit a request or raise 429. Returns the start time to hand back to `leave`."""
        now = time.monotonic()
        state = self.callers.setdefault(caller, _CallerState())
        self._trim(state, now)
        limits = self.limits
        if state.in_flight >= limits.concurrency:
            raise _too_many(
                CONCURRENCY_EXCEEDED, f"Number of concurrent requests exceeded the limit of {limits.concurrency}.", 1
            )
        if len(state.requests) >= limits.requests:
            retry = state.requests[0] + limits.window_seconds - now
            raise _too_many(
                REQUESTS_EXCEEDED,
                f"Number of requests exceeded the limit of {limits.requests} over time window of "
                f"{int(limits.window_seconds)} seconds.",
                retry,
            )
        spent = sum(seconds for _, seconds in state.executions)
        if spent >= limits.execution_seconds:
            retry = state.executions[0][0] + limits.window_seconds - now
            raise _too_many(
                EXECUTION_TIME_EXCEEDED,
                f"Combined execution time of incoming requests exceeded limit of "
                f"{int(limits.execution_seconds * 1000):,} milliseconds over time window of "
                f"{int(limits.window_seconds)} seconds. Decrease number of concurrent requests or reduce the "
                "duration of requests and try again later.",
                retry,
            )
        state.requests.append(now)
        state.in_flight += 1
        return now

    def remaining(self, caller: str) -> dict[str, str]:
        """The debug headers Dataverse adds to responses (reference §2.10)."""
        state = self.callers.get(caller, _CallerState())
        spent = sum(seconds for _, seconds in state.executions)
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(max(0, self.limits.requests - len(state.requests))),
            "x-ms-ratelimit-time-remaining-xrm-requests": f"{max(0.0, self.limits.execution_seconds - spent):,.2f}",
        }

    def leave(self, caller: str, started: float) -> None:
        state = self.callers[caller]
        state.in_flight -= 1
        now = time.monotonic()
        state.executions.append((now, now - started))


def _too_many(code: str, message: str, retry_after: float) -> DataverseError:
    seconds = max(1, math.ceil(retry_after))
    return DataverseError(429, code, message, headers={"Retry-After": str(seconds)})
