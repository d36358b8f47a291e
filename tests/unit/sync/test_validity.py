"""The validity run (core.sync.validity) over in-memory fakes and an injected clock: a date-effective row whose window
opens or closes between two ticks is sent again once, down the normal path; the checkpoint moves per map; a map whose
F&O query or send fails keeps its checkpoint and is read again next time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.maps import LoadedMap, MapSet
from core.sync.validity import ValiditySweep, crossing, validity_source
from tests.unit.sync.fakes import MemoryCheckpoints

SHIPPED = MapSet.load(["maps"])
# The party postal addresses map ships disabled; enabled here (with the parties map its lookup names).
MAPS = MapSet(
    [
        LoadedMap(
            m.model_copy(update={"enabled": True}) if name in ("party-postal-addresses", "parties") else m,
            SHIPPED.file_of(name),
        )
        for name, m in SHIPPED.items()
    ]
)
ADDRESSES = "PartyLocationPostalAddressesV2"
SOURCE = validity_source("party-postal-addresses")
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def address(location: str, valid_from: datetime, valid_to: datetime | None = None) -> dict[str, Any]:
    return {
        "PartyNumber": "P-1",
        "LocationId": location,
        "ValidFrom": iso(valid_from),
        "ValidTo": iso(valid_to) if valid_to else "1900-01-01T00:00:00Z",
    }


_EDGE = re.compile(r"\((\w+) gt (\S+) and \1 le (\S+)\)")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FnoRows:
    """F&O's rows of one entity set, filtered by the OData boundary filter the run sends (its only shape)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[tuple[str, str | None]] = []
        self.down = False

    async def query(
        self, entity_set: str, *, filter: str | None = None, select: Any = None, orderby: str | None = None
    ) -> list[dict[str, Any]]:
        self.queries.append((entity_set, filter))
        if self.down:
            raise ConnectionError("F&O is down")
        if entity_set != ADDRESSES:
            return []
        edges = _EDGE.findall(filter or "")
        assert edges and " or ".join(f"({f} gt {lo} and {f} le {hi})" for f, lo, hi in edges) == filter
        return [dict(row) for row in self.rows if any(_time(lo) < _time(row[f]) <= _time(hi) for f, lo, hi in edges)]


class Sent:
    def __init__(self) -> None:
        self.changes: list[Any] = []
        self.entries: list[Any] = []
        self.refuse = False

    async def send(self, changes: list[Any]) -> None:
        if self.refuse:
            raise ConnectionError("the queue is refusing")
        self.changes += changes

    async def record(self, entries: list[Any]) -> None:
        self.entries += entries


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def world(rows: list[dict[str, Any]]) -> tuple[ValiditySweep, FnoRows, MemoryCheckpoints, Sent, Clock]:
    fno, memory, sent, clock = FnoRows(rows), MemoryCheckpoints(), Sent(), Clock(T0)
    return ValiditySweep(MAPS, memory, sent, sent, fno=fno, clock=clock), fno, memory, sent, clock


async def test_the_first_run_sets_the_checkpoint_to_now_and_sends_nothing() -> None:
    run, fno, memory, sent, _ = world([address("A-1", T0 - timedelta(seconds=30))])
    report = await run.run()
    assert memory.rows[SOURCE].since == T0 and report.found == {"party-postal-addresses": 0}
    assert sent.changes == [] and fno.queries == []  # what crossed before the engine ran is initial sync's


async def test_a_row_whose_window_opens_between_two_ticks_is_sent_once() -> None:
    switch = T0 + timedelta(seconds=30)
    rows = [
        address("A-1", T0 - timedelta(days=365), switch),  # replaced: stops being valid at the switch
        address("A-2", switch),  # the future-dated one: becomes valid at the switch
        address("A-3", T0 + timedelta(minutes=5)),
    ]  # later: not yet
    run, fno, memory, sent, clock = world(rows)
    await run.run()
    clock.at = T0 + timedelta(minutes=1)
    report = await run.run()
    assert fno.queries[-1] == (
        ADDRESSES,
        "(ValidFrom gt 2030-01-01T12:00:00Z and ValidFrom le 2030-01-01T12:01:00Z)"
        " or (ValidTo gt 2030-01-01T12:00:00Z and ValidTo le 2030-01-01T12:01:00Z)",
    )
    assert report.found == {"party-postal-addresses": 2} and report.queued == 2 and not report.problems
    events = {c.event.keys["LocationId"]: c.event for c in sent.changes}
    assert set(events) == {"A-1", "A-2"}
    for event in events.values():
        assert (event.operation, event.source, event.map, event.initiated_by) == (
            "refetch",
            "fno",
            "party-postal-addresses",
            None,
        )
        assert event.occurred_at == switch
    assert sorted(e.reason for e in sent.entries) == [
        "validity: P-1|A-1 stopped being valid at 2030-01-01T12:00:30Z",
        "validity: P-1|A-2 became valid at 2030-01-01T12:00:30Z",
    ]
    assert {e.outcome for e in sent.entries} == {"retrying"} and len(sent.entries) == 2
    assert memory.rows[SOURCE].since == clock.at
    clock.at = T0 + timedelta(minutes=2)  # the next tick: nothing crossed since
    again = await run.run()
    assert again.queued == 0 and len(sent.changes) == 2
    clock.at = T0 + timedelta(minutes=6)  # A-3's date comes
    later = await run.run()
    assert later.queued == 1 and sent.changes[-1].event.keys["LocationId"] == "A-3"


async def test_the_same_crossing_found_twice_has_one_event_id() -> None:
    switch = T0 + timedelta(seconds=30)
    row = address("A-2", switch)
    table_map = MAPS["party-postal-addresses"]
    first = crossing(table_map, row, T0, T0 + timedelta(minutes=1))
    second = crossing(table_map, dict(row), T0 + timedelta(seconds=10), T0 + timedelta(minutes=2))
    assert not isinstance(first, str) and not isinstance(second, str) and first and second
    assert first.event.event_id == second.event.event_id  # the broker's duplicate detection drops the repeat
    other = crossing(table_map, {**row, "LocationId": "A-9"}, T0, T0 + timedelta(minutes=1))
    assert not isinstance(other, str) and other and other.event.event_id != first.event.event_id
    assert crossing(table_map, row, switch, T0 + timedelta(minutes=1)) is None  # the edge is not in (since, until]
    assert isinstance(crossing(table_map, {**row, "LocationId": ""}, T0, T0 + timedelta(minutes=1)), str)


@pytest.mark.parametrize("failing", ["fno", "queue"])
async def test_a_failing_side_keeps_the_checkpoint_and_the_next_run_sends(failing: str) -> None:
    switch = T0 + timedelta(seconds=30)
    run, fno, memory, sent, clock = world([address("A-2", switch)])
    await run.run()
    clock.at = T0 + timedelta(minutes=1)
    fno.down, sent.refuse = failing == "fno", failing == "queue"
    report = await run.run()
    assert report.problems and report.queued == 0 and sent.changes == []
    assert memory.rows[SOURCE].since == T0  # kept: the interval is read again
    fno.down = sent.refuse = False
    clock.at = T0 + timedelta(minutes=2)
    retried = await run.run()
    assert retried.queued == 1 and sent.changes[0].event.keys["LocationId"] == "A-2"
    assert memory.rows[SOURCE].since == clock.at


async def test_maps_without_validity_or_disabled_are_not_read() -> None:
    fno, memory, sent = FnoRows([address("A-2", T0 + timedelta(seconds=30))]), MemoryCheckpoints(), Sent()
    clock = Clock(T0)
    run = ValiditySweep(SHIPPED, memory, sent, sent, fno=fno, clock=clock)  # the validity map ships disabled
    await run.run()
    clock.at = T0 + timedelta(minutes=1)
    report = await run.run()
    assert report.found == {} and fno.queries == [] and memory.rows == {}
