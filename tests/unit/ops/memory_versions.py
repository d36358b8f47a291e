"""An in-memory stand-in for core.store.mapversions.MapVersionStore: the same answers and refusals, no Azurite
(tests/integration/store/test_mapversions.py holds the real one to them)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from azure.core.exceptions import ServiceRequestError

from core.store.mapversions import MapRevision, RevisionTaken, split_body


class MemoryVersions:
    def __init__(self) -> None:
        self.rows: dict[str, dict[int, MapRevision]] = {}
        self.down = False  # True: every call fails as an unreachable Table Storage does
        self.key_queries = 0

    def _reachable(self) -> None:
        if self.down:
            raise ServiceRequestError("connection refused")

    async def latest_revisions(self) -> dict[str, int]:
        self._reachable()
        self.key_queries += 1
        return {name: max(revisions) for name, revisions in self.rows.items() if revisions}

    async def latest(self, map_name: str) -> int:
        self._reachable()
        return max(self.rows.get(map_name, {}), default=0)

    async def get(self, map_name: str, revision: int) -> MapRevision | None:
        self._reachable()
        return self.rows.get(map_name, {}).get(revision)

    async def history(self, map_name: str) -> list[MapRevision]:
        self._reachable()
        return [replace(row, body=None) for _, row in sorted(self.rows.get(map_name, {}).items(), reverse=True)]

    async def add(self, map_name: str, revision: int, body: str, *, version: str, by: str, reason: str = "",
                  at: datetime | None = None) -> MapRevision:
        self._reachable()
        split_body(body)
        revisions = self.rows.setdefault(map_name, {})
        if revision in revisions:
            raise RevisionTaken(map_name, revision)
        revisions[revision] = MapRevision(map_name, revision, version, by, at or datetime.now(UTC), reason, body)
        return revisions[revision]
