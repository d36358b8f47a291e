"""Calls made at about the same time, handled together (a dataloader).

Apply works many records side by side, each reading, writing and saving its own; `Gather` collects
the calls issued within `window` seconds of the first (or until `max_items` wait) and hands them to
one `handle_many`, which answers each item (a value, or the exception that item raises). Callers
keep their one-record code; the target sees one `$batch` instead of a request per record
(core.connectors.batching), Table Storage one transaction instead of a write per link
(core.store.links).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

HandleMany = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Gather(Generic[T, R]):
    def __init__(self, handle_many: HandleMany[T, R], *, window: float = 0.003, max_items: int = 100) -> None:
        self.handle_many = handle_many
        self.window = window
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_items:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if pending:
            task = asyncio.get_running_loop().create_task(self._run(pending))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, pending: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self.handle_many([item for item, _ in pending])
            if len(results) != len(pending):
                raise RuntimeError(f"handle_many answered {len(results)} of {len(pending)} items")
        except BaseException as error:
            for _, future in pending:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), result in zip(pending, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Send what waits and let every call in flight finish."""
        self._flush()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
