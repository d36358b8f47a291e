"""Parking and catch-up (core.sync.catchup.MapModes) over in-memory fakes of its ports: which change a record
keeps while parked, how rounds send them on, and when the map runs again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.events.model import ChangeEvent
from core.maps import MapSet
from core.store.modes import ParkedChange
from core.sync.catchup import MapModes, UnknownMap
from core.sync.modes import ModeRefused
from core.sync.worker import CATCH_UP, ORIGIN
from tests.unit.sync.fakes import MemoryModes, MemoryParked, MemorySends
from tests.unit.sync.world import MAPS

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
ENGINE = "engine-user"


@pytest.fixture
def world() -> tuple[MapModes, MemoryModes, MemoryParked, MemorySends]:
    modes, parked, sent = MemoryModes(), MemoryParked(), MemorySends()
    service = MapModes(MapSet.load([MAPS]), modes, parked, changes=sent, jobs=sent, engine_user=ENGINE,
                       cache_seconds=0, round_size=3)
    return service, modes, parked, sent


def fno_change(account: str, n: int, *, by: str | None = None, operation: str = "update") -> ChangeEvent:
    return ChangeEvent(event_id=f"fo-{account}-{n}", map="customers", source="fno", entity="CustomersV3",
                       operation=operation, keys={"dataAreaId": "usmf", "CustomerAccount": account},
                       occurred_at=T0 + timedelta(seconds=n), initiated_by=by)


async def park(service: MapModes, event: ChangeEvent) -> str:
    admission, state = await service.admission("customers", from_catch_up=False)
    assert admission == "park"
    return await service.park(event, lane=f"customers|{event.keys['CustomerAccount']}", session_id="s1",
                              origin=event.event_id, state=state)


async def test_a_paused_map_keeps_the_latest_change_per_record_and_side(world) -> None:
    service, _, parked, _ = world
    await service.act("customers", "pause", by="ana", reason="window")
    for n in range(5):
        reason = await park(service, fno_change("US-001", n))
    assert reason == "parked: the map is paused (5 change(s) of this record from this side kept as the latest)"
    await park(service, fno_change("US-002", 9))
    assert await parked.count("customers") == (2, 6)
    kept = [c for c in parked.rows.values() if c.event.keys["CustomerAccount"] == "US-001"]
    assert [(c.event.event_id, c.origin, c.changes) for c in kept] == [("fo-US-001-4", "fo-US-001-4", 5)]
    # a late delivery of an older change does not replace the newer one
    await park(service, fno_change("US-001", 2))
    [kept] = [c for c in parked.rows.values() if c.event.keys["CustomerAccount"] == "US-001"]
    assert (kept.event.event_id, kept.changes) == ("fo-US-001-4", 6)


async def test_the_engines_own_change_does_not_hide_a_users_parked_change(world) -> None:
    service, _, parked, _ = world
    await service.act("customers", "pause", by="ana")
    await park(service, fno_change("US-001", 1, by="a-user"))
    await park(service, fno_change("US-001", 2, by=ENGINE))
    [kept] = parked.rows.values()
    assert kept.event.event_id == "fo-US-001-2" and kept.event.initiated_by == "a-user"


async def test_resume_sends_the_parked_changes_in_rounds_then_runs_again_and_sweeps(world) -> None:
    service, modes, parked, sent = world
    await service.act("customers", "pause", by="ana")
    for n, account in enumerate(["US-001", "US-002", "US-003", "US-004"]):
        await park(service, fno_change(account, n))
    resumed = await service.act("customers", "resume", by="ana", reason="done")
    assert resumed.mode == "catching_up" and resumed.catch_up.parked == 4
    [(job, at)] = sent.jobs
    assert job.kind == "catch_up" and at is None
    # a change arriving while catching up parks behind the record's parked change; the catch-up's own apply
    assert (await service.admission("customers", from_catch_up=False))[0] == "park"
    assert (await service.admission("customers", from_catch_up=True))[0] == "apply"

    await service.handle(job)  # round 0: a full page of 3
    assert len(sent.changes) == 3 and all(c.properties == {ORIGIN: c.event.event_id, CATCH_UP: "1"}
                                          for c in sent.changes)
    assert (await modes.get("customers")).mode == "catching_up"
    next_job = sent.jobs[-1][0]
    assert next_job.round == 1
    await park(service, fno_change("US-005", 9))  # parked meanwhile: the next round takes it
    await service.handle(next_job)
    assert len(sent.changes) == 5 and await parked.count("customers") == (0, 0)
    state = await modes.get("customers")
    assert state.mode == "running" and state.catch_up.sent == 5 and state.catch_up.finished_at is not None
    assert [t.to_mode for t in await modes.history("customers")] == ["running", "catching_up", "paused"]
    sweep, at = sent.jobs[-1]
    assert sweep.kind == "sweep" and at is not None
    # an instance that had not seen the mode change parked one more: the sweep sends it
    await parked.put(ParkedChange("customers", "late", fno_change("US-006", 10), "s1", "fo-late", 1, T0))
    await service.handle(sweep)
    assert sent.changes[-1].event.event_id == "fo-US-006-10" and await parked.count("customers") == (0, 0)
    await service.handle(next_job)  # a redelivered round of a finished catch-up does nothing
    assert len(sent.changes) == 6


async def test_moves_not_allowed_and_unknown_maps_are_refused(world) -> None:
    service, modes, _, sent = world
    with pytest.raises(ModeRefused, match="map 'customers' is running: resume is allowed only from"):
        await service.act("customers", "resume", by="ana")
    with pytest.raises(UnknownMap):
        await service.act("nowhere", "pause", by="ana")
    await service.act("customers", "stop", by="ana", reason="retired")
    admission, state = await service.admission("customers", from_catch_up=True)
    assert admission == "drop" and state.reason == "retired"
    assert sent.jobs == [] and [t.to_mode for t in modes.transitions] == ["stopped"]


async def test_an_outage_pauses_the_map_and_a_probe_resumes_it_once_the_side_answers(world) -> None:
    service, modes, _, sent = world
    answers: list[bool] = [False, True]
    asked: list[str] = []

    async def fno_probe(table_map) -> object:
        asked.append(table_map.name)
        if not answers.pop(0):
            raise ConnectionError("F&O down")
        return {}

    service.probes = {"fno": fno_probe}
    paused = await service.auto_pause("customers", "fno", "F&O has failed for 61 s: 503")
    assert (paused.mode, paused.by, paused.reason) == ("error", "auto-pause", "F&O has failed for 61 s: 503")
    assert (await service.auto_pause("customers", "fno", "again")).mode == "error"  # once is enough
    [(probe, at)] = sent.jobs
    assert probe.kind == "probe" and probe.side == "fno" and at is not None
    assert (await service.admission("customers", from_catch_up=False))[0] == "park"

    await service.handle(probe)  # still down: asked again later, the map stays paused
    assert asked == ["customers"] and (await modes.get("customers")).mode == "error"
    retry, later = sent.jobs[-1]
    assert retry.kind == "probe" and retry.round == 1 and later is not None and later > at
    await service.handle(retry)  # back: the map catches up by itself
    state = await modes.get("customers")
    assert (state.mode, state.by, state.reason) == ("catching_up", "auto-resume", "F&O answers again")
    assert sent.jobs[-1][0].kind == "catch_up"
    await service.handle(retry)  # a probe delivered twice does nothing more
    assert len(asked) == 2


async def test_a_paused_or_stopped_map_is_not_auto_paused(world) -> None:
    service, modes, _, sent = world
    await service.act("customers", "stop", by="ana")
    assert (await service.auto_pause("customers", "dataverse", "down")).mode == "stopped"
    assert sent.jobs == [] and len(modes.transitions) == 1


async def test_dependent_maps_follow_their_parents_pause_and_resume_after_its_catch_up(world) -> None:
    service, modes, _, sent = world
    assert set(service.dependents("customer-groups")) >= {"customers", "contacts"}  # contacts through customers
    assert "customer-groups" not in service.dependents("customers")
    await service.act("vendors", "pause", by="ana", reason="own pause")  # paused on its own: stays paused
    await service.act("customer-groups", "pause", by="ana")
    await service.act("vendor-groups", "pause", by="ana")
    customers = await modes.get("customers")
    assert (customers.mode, customers.by, customers.reason) == ("paused", "follows customer-groups",
                                                                "customer-groups is paused")
    assert (await modes.get("contacts")).by == "follows customer-groups"
    assert (await modes.get("vendors")).by == "ana"
    await service.act("customer-groups", "resume", by="ana")
    assert (await modes.get("contacts")).mode == "paused"  # not before the parent has caught up
    [job] = [j for j, _ in sent.jobs if j.map == "customer-groups" and j.kind == "catch_up"]
    await service.handle(job)
    assert (await modes.get("customer-groups")).mode == "running"
    for child in ("customers", "contacts"):
        state = await modes.get(child)
        assert (state.mode, state.by) == ("catching_up", "follows customer-groups")
    await service.act("vendor-groups", "resume", by="ana")
    [job] = [j for j, _ in sent.jobs if j.map == "vendor-groups" and j.kind == "catch_up"]
    await service.handle(job)
    assert (await modes.get("vendors")).mode == "paused"  # its own pause is its own to end
