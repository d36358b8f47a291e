"""Activity log against Azurite: transactions by partition, queries across hour partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.store.activity import ActivityEntry, ActivityLog
from core.store.tables import Tables

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def entry(map: str, key: str, at: datetime, outcome: str = "applied", **extra: object) -> ActivityEntry:
    return ActivityEntry(map=map, key=key, source="fno", operation="update", outcome=outcome,  # type: ignore[arg-type]
                         reason="written", at=at, **extra)  # type: ignore[arg-type]


async def test_record_and_query_across_hours(tables: Tables) -> None:
    log = ActivityLog(tables)
    # 150 entries in one hour (two transactions) and some in the hours before.
    await log.record([entry("customers", f"USMF|{i}", NOW - timedelta(seconds=i)) for i in range(150)])
    await log.record([
        entry("customers", "USMF|old", NOW - timedelta(hours=3), outcome="failed", detail="x" * 100,
              latency_ms=12.5, target_id="abc", event_id="e1", message_id="m1"),
        entry("vendors", "USMF|V1", NOW - timedelta(hours=1), outcome="skipped"),
        entry("customers", "USMF|ancient", NOW - timedelta(days=2)),
    ])
    everything = await log.query(map="customers", since=NOW - timedelta(hours=5), until=NOW, limit=1000)
    assert len(everything) == 151
    assert [e.at for e in everything] == sorted((e.at for e in everything), reverse=True)
    assert everything[0].key == "USMF|0" and everything[-1].key == "USMF|old"
    old = everything[-1]
    assert (old.detail, old.latency_ms, old.target_id, old.event_id, old.message_id) == ("x" * 100, 12.5, "abc",
                                                                                         "e1", "m1")
    newest = await log.query(map="customers", since=NOW - timedelta(hours=5), until=NOW, limit=10)
    assert [e.key for e in newest] == [f"USMF|{i}" for i in range(10)]
    by_key = await log.query(map="customers", key="USMF|old", since=NOW - timedelta(hours=5), until=NOW)
    assert [e.outcome for e in by_key] == ["failed"]
    failed = await log.query(map="customers", outcome="failed", since=NOW - timedelta(days=3), until=NOW)
    assert [e.key for e in failed] == ["USMF|old"]
    # A window that excludes the newest hour and the oldest day.
    window = await log.query(map="customers", since=NOW - timedelta(hours=4), until=NOW - timedelta(hours=2))
    assert [e.key for e in window] == ["USMF|old"]
    # No map: every map that has entries.
    all_maps = await log.query(since=NOW - timedelta(hours=2), until=NOW - timedelta(minutes=30))
    assert [(e.map, e.key) for e in all_maps] == [("vendors", "USMF|V1")]


async def test_query_refuses_bad_windows(tables: Tables) -> None:
    log = ActivityLog(tables)
    with pytest.raises(ValueError, match="since"):
        await log.query(map="customers", since=NOW - timedelta(days=40), until=NOW)
    with pytest.raises(ValueError, match="since"):
        await log.query(map="customers", since=NOW, until=NOW - timedelta(hours=1))
    with pytest.raises(ValueError, match="outcome"):
        await log.query(map="customers", outcome="exploded")
    with pytest.raises(ValueError, match="timezone"):
        await log.query(map="customers", since=datetime(2026, 1, 1))


async def test_record_refuses_naive_time_and_bad_map(tables: Tables) -> None:
    log = ActivityLog(tables)
    with pytest.raises(ValueError, match="timezone"):
        await log.record([entry("customers", "k", datetime(2026, 1, 1))])
    with pytest.raises(ValueError, match="map"):
        await log.record([entry("a/b", "k", NOW)])


async def test_long_details_are_cut_and_stored(tables: Tables) -> None:
    log = ActivityLog(tables)
    entries = [entry("customers", f"USMF|{i}", NOW - timedelta(seconds=i), detail=f"{i}" + "d" * 40_000)
               for i in range(100)]
    await log.record(entries)
    found = await log.query(map="customers", since=NOW - timedelta(hours=1), until=NOW, limit=1000)
    assert len(found) == 100
    assert all(e.detail is not None and e.detail.startswith(e.key.split("|")[1]) for e in found)
    assert all("cut here" in (e.detail or "") for e in found)


def test_transactions_stay_under_100_operations_and_4_mib() -> None:
    # Azurite accepts bigger transactions than the service does, so the split is checked directly.
    from core.store.activity import _batches, _to_entity

    small = [_to_entity(entry("customers", str(i), NOW)) for i in range(250)]
    assert [len(b) for b in _batches(small)] == [100, 100, 50]
    big = [_to_entity(entry("customers", str(i), NOW, detail="d" * 40_000)) for i in range(100)]
    batches = _batches(big)
    assert len(batches) > 1 and sum(len(b) for b in batches) == 100
    assert all(sum(2 * len(str(v)) for e in b for v in e.values()) < 4 * 1024 * 1024 for b in batches)
