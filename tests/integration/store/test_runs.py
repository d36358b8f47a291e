"""Runs, page checkpoints, page leases and row notes in Azurite (core.store.runs)."""

from __future__ import annotations

import asyncio

import pytest

from core.store.runs import RunChanged, RunStore
from core.store.tables import Tables
from core.sync.runs import PageMark, RowNote, Run, Tally

pytestmark = pytest.mark.integration


async def test_a_run_round_trips_and_saves_guarded_by_its_etag(tables: Tables) -> None:
    store = RunStore(tables)
    run = await store.create(Run(id="20261204T060000-abc123", kind="initial", maps=["a", "b"],
                                 sources={"a": "fno", "b": "dataverse"}, deferred={"a": ["x"]}))
    first, second = await store.get(run.id), await store.get(run.id)
    assert first is not None and second is not None
    assert (first.maps, first.sources, first.deferred, first.status) == (["a", "b"], run.sources, {"a": ["x"]},
                                                                          "queued")
    first.move("running")
    await store.save(first)
    second.move("cancelled")
    with pytest.raises(RunChanged):
        await store.save(second)  # someone else moved it since it was read
    assert [r.id for r in await store.recent()] == [run.id]


async def test_page_marks_and_notes(tables: Tables) -> None:
    store = RunStore(tables)
    await store.mark("r", "a", "rows", PageMark(0, "read", False, Tally(read=10)))
    await store.mark("r", "a", "rows", PageMark(0, "done", False, Tally(read=10, written=9, failed=1)))
    await store.mark("r", "a", "rows", PageMark(1, "done", True, Tally(read=3, matched=3)))
    marks = sorted(await store.marks("r", "a", "rows"), key=lambda m: m.page)
    assert [(m.page, m.state, m.last, m.tally.written) for m in marks] == [(0, "done", False, 9), (1, "done", True, 0)]
    await store.note("r", [RowNote("a", ("USMF", "X|1"), "failed", detail="refused"),
                           RowNote("a", ("USMF", "X2"), "differs", ("name",))])
    failed = await store.notes("r", "a", outcome="failed")
    assert [(n.key, n.detail) for n in failed] == [(("USMF", "X|1"), "refused")]
    assert {n.outcome for n in await store.notes("r", "a")} == {"failed", "differs"}


async def test_a_page_lease_is_held_by_one_worker_until_released_or_lapsed(tables: Tables) -> None:
    store = RunStore(tables)
    etag, _ = await store.claim("r", "a", "rows", 4, "worker-1", 60)
    assert etag is not None
    busy, until = await store.claim("r", "a", "rows", 4, "worker-2", 60)
    assert busy is None and until is not None
    etag = await store.renew("r", "a", "rows", 4, "worker-1", etag, 60)
    await store.release("r", "a", "rows", 4, etag)
    taken, _ = await store.claim("r", "a", "rows", 4, "worker-2", 0.5)
    assert taken is not None
    await asyncio.sleep(1)  # worker-2 died: its lease lapses
    again, _ = await store.claim("r", "a", "rows", 4, "worker-3", 60)
    assert again is not None
    assert await store.marks("r", "a", "rows") == []  # leases are not checkpoints
