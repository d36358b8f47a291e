"""What happened to changes: the activity log, read by map, record key, time window and outcome."""

from __future__ import annotations

from datetime import datetime

from core.store.activity import ActivityEntry, ActivityLog


async def activity(
    log: ActivityLog, *, map: str | None = None, key: str | None = None, since: datetime | None = None,
    until: datetime | None = None, outcome: str | None = None, limit: int = 100,
) -> list[ActivityEntry]:
    """Entries newest first (default window: the last 24 hours; ValueError naming a bad parameter)."""
    return await log.query(map=map, key=key, since=since, until=until, outcome=outcome, limit=limit)
