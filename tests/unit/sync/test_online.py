"""Online mode (core.sync.online): a synchronous step's change written to F&O at once, a refusal carrying F&O's
message, and what cannot or must not be written inside the save going the asynchronous way."""

from __future__ import annotations

from typing import Any

import pytest

from core.connectors.errors import TransientError, ValidationFailed
from core.events.model import ChangeEvent
from core.maps import LoadedMap, MapSet
from core.sync.errors import NotOnline
from core.sync.modes import Admission, MapState
from core.sync.online import OnlineRefused, sync_online
from tests.unit.sync.fakes import MemoryActivity, MemorySends
from tests.unit.sync.world import World, earlier

USMF_001 = {"dataAreaId": "usmf", "CustomerAccount": "US-001"}


def online(world: World) -> MapSet:
    """The world's maps with customers online (the applier follows)."""
    loaded = [LoadedMap(m.model_copy(update={"online": name == "customers"}), world.maps.file_of(name))
              for name, m in world.maps.items()]
    maps = MapSet(loaded)
    world.applier.maps = maps
    return maps


def saved(world: World, row_id: str, **changes: Any) -> ChangeEvent:
    """What a synchronous step sends for an account's update: the post image deployment registers."""
    event = world.dv_event("customers", row_id, values=changes.pop("values", None) or world.image(row_id),
                           at=changes.pop("at", None))
    return event.model_copy(update={"partial": False})


class Modes:
    """The mode gate: every map running unless given another state."""

    def __init__(self, *states: MapState) -> None:
        self.states = {s.map: s for s in states}

    async def admission(self, map_name: str, *, from_catch_up: bool) -> tuple[Admission, MapState]:
        state = self.states.get(map_name) or MapState(map=map_name, mode="running")
        return state.admission(catching_up_delivery=from_catch_up), state


async def run(world: World, maps: MapSet, event: Any, modes: Modes | None = None
              ) -> tuple[Any, MemorySends, MemoryActivity]:
    sends, activity = MemorySends(), MemoryActivity()
    result = await sync_online(event.model_copy(update={"map": None}), maps, applier=world.applier,
                               modes=modes or Modes(), queue=sends, activity=activity, links=world.links)
    return result, sends, activity


async def test_a_change_of_an_online_map_is_written_to_fno_at_once(world: World) -> None:
    maps = online(world)
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Contoso Online"
    result, sends, activity = await run(world, maps, saved(world, row_id))
    assert result.applied == ["customers"] and result.queued == 0 and sends.changes == []
    assert world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] == "Contoso Online"
    [entry] = activity.entries
    assert (entry.outcome, entry.key) == ("applied", "USMF|US-001") and entry.reason.startswith("online: ")
    assert [c for c in world.dv.calls if c.method == "get" and c.entity_set == "accounts"] == []  # no re-read


async def test_a_refusal_by_fno_carries_fnos_message_and_is_recorded(world: World, monkeypatch: Any) -> None:
    maps = online(world)
    row_id = await world.linked_customer()

    async def refuse(*_: Any, **__: Any) -> None:
        raise ValidationFailed("The value of field 'OrganizationName' is 150 characters long; the field allows "
                               "at most 100.", status=400, method="PATCH", url="CustomersV3")

    monkeypatch.setattr(world.fo, "update", refuse)
    world.dv.tables["accounts"][row_id]["name"] = "R" * 150
    with pytest.raises(OnlineRefused) as refused:
        await run(world, maps, saved(world, row_id))
    assert refused.value.kind == "refused" and refused.value.map == "customers"
    assert refused.value.message.startswith("F&O refused the change: The value of field 'OrganizationName'")
    link = await world.links.find("customers", "dataverse", row_id)
    assert link is not None and "R" * 150 not in str(link.versions)  # nothing remembered of the refused save


async def test_fno_unavailable_is_a_refusal_worth_trying_again(world: World, monkeypatch: Any) -> None:
    maps = online(world)
    row_id = await world.linked_customer()

    async def down(*_: Any, **__: Any) -> None:
        raise TransientError("Service Unavailable", status=503, method="PATCH", url="CustomersV3")

    monkeypatch.setattr(world.fo, "update", down)
    world.dv.tables["accounts"][row_id]["name"] = "Contoso Later"
    activity = MemoryActivity()
    with pytest.raises(OnlineRefused) as refused:
        await sync_online(saved(world, row_id), maps,
                          applier=world.applier, modes=Modes(), queue=MemorySends(), activity=activity)
    assert refused.value.kind == "unavailable" and "Service Unavailable" in refused.value.message
    assert [e.outcome for e in activity.entries] == ["failed"]


async def test_a_paused_online_map_queues_the_change_and_writes_nothing(world: World) -> None:
    maps = online(world)
    row_id = await world.linked_customer()
    modes = Modes(MapState(map="customers", mode="paused"))
    world.dv.tables["accounts"][row_id]["name"] = "Contoso Paused"
    result, sends, _ = await run(world, maps, saved(world, row_id),
                                 modes)
    assert result.applied == [] and [c.event.map for c in sends.changes] == ["customers"]
    assert world.fo.writes() == []  # the worker parks it


async def test_a_map_that_is_not_online_is_queued(world: World) -> None:
    row_id = await world.linked_customer()
    result, sends, _ = await run(world, world.maps, saved(world, row_id))
    assert result.applied == [] and result.queued == 1 and world.fo.writes() == []
    assert [c.event.map for c in sends.changes] == ["customers"]


async def test_an_event_without_a_post_image_is_not_completed_by_reading_the_row_being_saved(
        world: World) -> None:
    maps = online(world)
    row_id = await world.linked_customer()
    event = world.dv_event("customers", row_id, values={"name": "Partial"})  # Target only, partial
    with pytest.raises(NotOnline):
        await world.applier.apply(event, online=True)
    result, sends, _ = await run(world, maps, event)  # so it goes the asynchronous way
    assert result.applied == [] and len(sends.changes) == 1 and world.fo.writes() == []


async def test_a_column_the_post_image_leaves_out_is_empty(world: World) -> None:
    maps = online(world)
    row_id = await world.linked_customer()
    image = {k: v for k, v in world.image(row_id).items() if k != "telephone1"}  # images omit empty columns
    event = saved(world, row_id, values=image)
    result, _, _ = await run(world, maps, event)
    assert result.applied == ["customers"]
    assert world.fo.record("CustomersV3", **USMF_001)["PrimaryContactPhone"] in (None, "")


async def test_while_the_steps_are_redeployed_every_change_goes_the_asynchronous_way(world: World) -> None:
    maps = online(world)
    row_id = await world.linked_customer()
    sends = MemorySends()
    result = await sync_online(saved(world, row_id), maps,
                               applier=world.applier, modes=Modes(), queue=sends, activity=MemoryActivity(),
                               images_current=False)
    assert result.applied == [] and len(sends.changes) == 1 and world.fo.writes() == []


async def test_writing_back_to_dataverse_is_left_to_the_asynchronous_way(world: World) -> None:
    maps = online(world)
    row_id = await world.linked_customer()  # F&O changed OrganizationName at T0
    world.dv.tables["accounts"][row_id]["name"] = "Made before T0"
    event = saved(world, row_id, at=earlier(5))
    with pytest.raises(NotOnline):
        await world.applier.apply(event, online=True)
    assert world.dv.writes() == [] and world.fo.writes() == []
    result, sends, _ = await run(world, maps, event)  # the worker writes it back, outside the save
    assert result.applied == [] and len(sends.changes) == 1
