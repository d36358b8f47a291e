"""Map modes, their transitions and parked changes in Azurite (core.store.modes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.events.model import ChangeEvent
from core.store.modes import ModeChanged, ModeStore, ParkedChange, ParkedStore, parked_record
from core.store.tables import Tables
from core.sync.modes import MapState

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


async def test_a_mode_round_trips_guarded_and_keeps_its_transitions_newest_first(tables: Tables) -> None:
    store = ModeStore(tables)
    fresh = await store.get("customers")
    assert fresh.mode == "running" and fresh.etag is None  # never moved: runs
    paused, move = fresh.act("pause", by="ana", reason="window")
    saved = await store.save(paused, move)
    with pytest.raises(ModeChanged):
        await store.save(paused, move)  # a second create of a row someone made meanwhile
    later = datetime.now(UTC) + timedelta(hours=1)
    resumed, move2 = saved.move("catching_up", by="bob", reason="over", now=later)
    resumed = await store.save(resumed, move2)
    with pytest.raises(ModeChanged):
        await store.save(saved)  # saved's etag is gone
    again = await store.get("customers")
    assert (again.mode, again.by, again.reason, again.catch_up.started_at) == ("catching_up", "bob", "over", later)
    assert [(t.from_mode, t.to_mode, t.by) for t in await store.history("customers")] == [
        ("paused", "catching_up", "bob"), ("running", "paused", "ana")]
    assert set(await store.all()) == {"customers"}
    assert await store.get("vendors") == MapState(map="vendors")


async def test_parked_changes_are_kept_per_record_and_removed_only_if_unchanged(tables: Tables) -> None:
    store = ParkedStore(tables)
    events = [ChangeEvent(event_id=f"fo-{n}", map="customers", source="fno", entity="CustomersV3",
                          operation="update", keys={"dataAreaId": "usmf", "CustomerAccount": f"US-{n % 2}"},
                          occurred_at=T0 + timedelta(seconds=n)) for n in range(3)]
    for event in events:
        record = parked_record(f"customers|US-{event.keys['CustomerAccount']}", event)
        await store.put(ParkedChange("customers", record, event, "s1", event.event_id, 1, T0))
    assert await store.count("customers") == (2, 2)
    page = await store.page("customers", 10)
    assert sorted(c.event.event_id for c in page) == ["fo-1", "fo-2"]
    newer = next(c for c in page if c.event.event_id == "fo-2")
    await store.put(ParkedChange("customers", newer.record, events[0], "s1", "fo-0b", 2, T0))  # parked again
    kept = await store.remove(page)
    assert [c.record for c in kept] == [newer.record]  # its newer version stays for a later round
    [left] = await store.page("customers", 10)
    assert (left.origin, left.changes, left.session_id) == ("fo-0b", 2, "s1")
    assert await store.remove([left]) == [] and await store.count("customers") == (0, 0)


async def test_a_round_of_parked_changes_is_removed_in_transactions(tables: Tables) -> None:
    store = ParkedStore(tables)
    for n in range(150):
        event = ChangeEvent(event_id=f"fo-{n}", map="vendors", source="fno", entity="VendorsV2", operation="update",
                            keys={"dataAreaId": "usmf", "VendorAccountNumber": f"V-{n:03d}"}, occurred_at=T0)
        record = parked_record(f"vendors|V-{n:03d}", event)
        await store.put(ParkedChange("vendors", record, event, "s", f"fo-{n}", 1, T0))
    page = await store.page("vendors", 200)
    assert len(page) == 150
    again = page[120]
    await store.put(ParkedChange("vendors", again.record, again.event, "s", "fo-again", 2, T0))  # parked again
    kept = await store.remove(page)
    assert [c.record for c in kept] == [again.record]  # its transaction fell back to row by row
    assert await store.count("vendors") == (1, 2)
