"""The ordered result of a collection query, kept while its entity set is unchanged (both simulators).

Both simulators filter and sort in Python, over every row of the set. Without this, each page of a paged read
costs the whole set: a 100,000-row initial sync read 1,000 a page decoded, filtered and sorted 100,000 rows a
hundred times (about 2 s a page). With it the first page pays that once, the next pages only their own rows.
The caller names what changes the answer (entity set, filter, order, ...) in `key` and hands a `stamp` that
moves on every write to the set (a rolled-back write too, which only costs a recomputation).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueryCache(Generic[T]):
    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[int, T]] = OrderedDict()

    def get(self, key: Hashable, stamp: int, compute: Callable[[], T]) -> T:
        """The cached answer of `key` when it was computed at this `stamp`, else `compute()` (kept)."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            self._entries.move_to_end(key)
            return hit[1]
        value = compute()
        self._entries[key] = (stamp, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value
