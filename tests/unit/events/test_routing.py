"""Routing change events to maps and the all-or-nothing ingest, with an in-memory queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.events.dataverse import parse_webhook
from core.events.errors import PayloadError
from core.events.fno import parse_fno
from core.events.model import ChangeEvent
from core.maps import LoadedMap, MapSet, load_maps
from core.store.queues import QueuedChange
from core.sync.ingest import DEFAULT_BUCKETS, MAX_ID, bucket_of, ingest, message_id, route

PAYLOADS = Path(__file__).parent / "payloads"
ROOT = Path(__file__).parents[3]
ACCOUNT = "acf5b83d-06a1-4ef3-b78f-c2eca283e6ad"


class MemoryQueue:
    def __init__(self) -> None:
        self.sent: list[list[QueuedChange]] = []

    async def send(self, changes: list[QueuedChange]) -> None:
        self.sent.append(list(changes))


def mapset(**overrides: dict[str, object]) -> MapSet:
    """The shipped maps, with field overrides per map name (e.g. customers={"enabled": False})."""
    loaded = load_maps([ROOT / "maps"]).maps
    return MapSet(LoadedMap(item.map.model_copy(update=overrides.get(item.map.name, {})), item.file)
                  for item in loaded)


def dv_update() -> ChangeEvent:
    return parse_webhook((PAYLOADS / "ref_1_7_1_update.json").read_bytes(), {})


def test_dataverse_event_routes_to_its_map() -> None:
    routing = route(dv_update(), mapset())
    [change] = routing.changes
    assert change.event.map == "customers"
    assert change.message_id == "dv:4af10637-4ea2-e711-8122-000d3aa2331c|customers"
    assert change.session_id == f"customers|b{bucket_of('customers', ('US-001',), DEFAULT_BUCKETS)}"
    assert routing.skipped == []


def test_message_ids_are_stable_across_deliveries() -> None:
    first = route(dv_update(), mapset()).changes[0]
    second = route(dv_update(), mapset()).changes[0]
    assert (first.message_id, first.session_id) == (second.message_id, second.session_id)


def test_fno_event_session_is_the_bucket_of_its_key() -> None:
    maps = mapset()
    [event] = parse_fno((PAYLOADS / "fno_data_update.json").read_bytes(), maps).events
    [change] = route(event, maps).changes
    assert change.session_id == f"customers|b{bucket_of('customers', ('US-900',), DEFAULT_BUCKETS)}"
    assert change.message_id == f"{event.event_id}|customers"
    # a business event about the same record lands in the same session
    [business] = parse_fno((PAYLOADS / "fno_business_create.json").read_bytes(), maps).events
    assert route(business, maps).changes[0].session_id == change.session_id


def test_both_sides_changes_of_one_record_share_a_session() -> None:
    maps = mapset()
    [fno_event] = parse_fno((PAYLOADS / "fno_data_update.json").read_bytes(), maps).events
    dv_event = dv_update().model_copy(update={"values": {**dv_update().values, "accountnumber": "us-900"}})
    [fno_change] = route(fno_event, maps).changes
    [dv_change] = route(dv_event, maps).changes
    assert fno_change.session_id == dv_change.session_id
    # the bucket count spreads records over that many sessions
    sessions = {route(dv_update().model_copy(update={"values": {"accountnumber": f"C-{n}"}}), maps,
                      buckets=4).changes[0].session_id for n in range(200)}
    assert sessions == {f"customers|b{n}" for n in range(4)}


async def test_dataverse_event_without_its_key_is_placed_through_the_link_index() -> None:
    maps = mapset()
    delete = dv_update().model_copy(update={"operation": "delete", "values": {}, "pre": None})

    class Links:
        async def find(self, map: str, side: str, record_id: str) -> object:
            assert (map, side, record_id) == ("customers", "dataverse", ACCOUNT)
            return type("L", (), {"key": ("USMF", "US-001")})()

    queue = MemoryQueue()
    await ingest([delete], maps, queue, links=Links())
    assert queue.sent[0][0].session_id == route(dv_update(), maps).changes[0].session_id
    # never synced and keyless: still placed, by its row id
    orphan = await ingest([delete], maps, MemoryQueue())
    assert orphan.accepted == 1


def test_disabled_map_is_skipped() -> None:
    routing = route(dv_update(), mapset(customers={"enabled": False}))
    assert routing.changes == []
    assert [(s.entity, s.reason) for s in routing.skipped] == [("account", "no enabled map covers account")]


def test_map_with_nothing_to_send_that_way_is_skipped() -> None:
    maps = mapset()
    one_way = [f.model_copy(update={"direction": "to_dataverse"}) for f in maps["customers"].fields]
    lookups = [lk.model_copy(update={"direction": "to_dataverse"}) for lk in maps["customers"].lookups]
    routing = route(dv_update(), mapset(customers={"fields": one_way, "lookups": lookups}))
    assert routing.changes == [] and routing.skipped[0].entity == "account"


def test_unmapped_table_is_skipped() -> None:
    event = dv_update().model_copy(update={"entity": "lead"})
    assert route(event, mapset()).skipped[0].reason == "no enabled map covers lead"


def test_long_ids_are_capped_and_stable() -> None:
    long_id = "dv:" + "x" * 200
    capped = message_id(long_id, "customers")
    assert len(capped) == MAX_ID and capped == message_id(long_id, "customers")
    assert capped != message_id(long_id + "y", "customers")


def test_fno_event_without_its_key_cannot_be_routed() -> None:
    maps = mapset()
    [event] = parse_fno((PAYLOADS / "fno_data_update.json").read_bytes(), maps).events
    broken = event.model_copy(update={"keys": {"dataAreaId": "usmf"}})
    with pytest.raises(PayloadError):
        route(broken, maps)


async def test_ingest_sends_once_in_one_batch() -> None:
    maps, queue = mapset(), MemoryQueue()
    [fno_event] = parse_fno((PAYLOADS / "fno_data_update.json").read_bytes(), maps).events
    unmapped = dv_update().model_copy(update={"entity": "lead"})
    result = await ingest([dv_update(), fno_event, unmapped], maps, queue)
    assert result.accepted == 2 and [s.entity for s in result.skipped] == ["lead"]
    assert len(queue.sent) == 1 and [c.event.map for c in queue.sent[0]] == ["customers", "customers"]


async def test_ingest_sends_nothing_when_one_event_fails_routing() -> None:
    maps, queue = mapset(), MemoryQueue()
    [fno_event] = parse_fno((PAYLOADS / "fno_data_update.json").read_bytes(), maps).events
    broken = fno_event.model_copy(update={"keys": {}})
    with pytest.raises(PayloadError):
        await ingest([dv_update(), broken], maps, queue)
    assert queue.sent == []
