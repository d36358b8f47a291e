"""Per-caller throttling: a concurrency cap and a request budget per sliding window.

F&O's real service protection is resource based and answers 429 with Retry-After; a budget per
caller is the deterministic stand-in, configurable so tests can make it tiny.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from devstack.fno.errors import ODataError


class Throttle:
    def __init__(self, max_concurrent: int = 0, rate: int = 0, window: float = 300.0) -> None:
        """0 turns the respective limit off."""
        self.max_concurrent = max_concurrent
        self.rate = rate
        self.window = window
        self._in_flight: dict[str, int] = defaultdict(int)
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self.throttled = 0

    def enter(self, caller_id: str) -> None:
        now = time.monotonic()
        if self.max_concurrent and self._in_flight[caller_id] >= self.max_concurrent:
            self._reject(1, f"more than {self.max_concurrent} concurrent requests")
        if self.rate:
            hits = self._hits[caller_id]
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.rate:
                wait = max(1, math.ceil(hits[0] + self.window - now))
                self._reject(wait, f"more than {self.rate} requests in {self.window:g} s")
            hits.append(now)
        self._in_flight[caller_id] += 1

    def leave(self, caller_id: str) -> None:
        self._in_flight[caller_id] -= 1
        if self._in_flight[caller_id] <= 0:
            del self._in_flight[caller_id]

    def _reject(self, retry_after: int, why: str) -> None:
        self.throttled += 1
        raise ODataError(
            429,
            f"Too many requests. The caller exceeded the service protection limit ({why}). "
            f"Retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
