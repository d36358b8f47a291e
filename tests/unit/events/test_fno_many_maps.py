"""F&O events of an entity several maps read: one change event per map, each read with its own map's names and
key and routed to that map alone; a map whose key the event lacks is refused for that map only; the queue's
message ids stay distinct per map and stable across redeliveries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from core.events.errors import PayloadError
from core.events.fno import parse_fno
from core.maps import LoadedMap, MapSet, TableMap, load_maps
from core.sync.ingest import ingest, route
from tests.unit.events.test_routing import MemoryQueue

PAYLOADS = Path(__file__).parent / "payloads"
ROOT = Path(__file__).parents[3]


def raw(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def sibling(base: TableMap, name: str, key_field: str, dataverse_key: str, **fno: Any) -> TableMap:
    """Another map on the customers' F&O entity whose key is `key_field` (not CustomerAccount)."""
    return base.model_copy(update={
        "name": name,
        "fno": base.fno.model_copy(update={"key": ["dataAreaId", key_field], **fno}),
        "dataverse": base.dataverse.model_copy(update={"key": ["msdyn_company.cdm_companycode", dataverse_key]}),
    })


def maps_with(*extra: TableMap, drop_customers: bool = False) -> MapSet:
    loaded = load_maps([ROOT / "maps"]).maps
    file = next(item.file for item in loaded if item.map.name == "customers")
    kept = [item for item in loaded if not (drop_customers and item.map.name == "customers")]
    return MapSet([*kept, *(LoadedMap(m, file) for m in extra)])


@pytest.fixture(scope="module")
def customers() -> TableMap:
    return next(item.map for item in load_maps([ROOT / "maps"]).maps if item.map.name == "customers")


def test_a_data_event_is_read_by_each_map_with_its_own_key(customers: TableMap) -> None:
    by_name = sibling(customers, "customers-by-name", "OrganizationName", "name")
    maps = maps_with(by_name)
    parsed = parse_fno(raw("fno_data_update"), maps)
    assert parsed.skipped == []
    by_map = {e.map: e for e in parsed.events}
    assert set(by_map) == {"customers", "customers-by-name"}  # customer-persons is disabled: not read for it
    assert by_map["customers"].keys == {"dataAreaId": "usmf", "CustomerAccount": "US-900"}
    assert by_map["customers-by-name"].keys == {"dataAreaId": "usmf", "OrganizationName": "Capture Ltd (US)"}
    assert by_map["customers"].event_id == by_map["customers-by-name"].event_id  # one source event

    queue = MemoryQueue()
    result = asyncio.run(ingest(parsed.events, maps, queue))
    [sent] = queue.sent
    assert result.accepted == 2 and result.skipped == []
    # each copy to its own map only (not fanned out again to the entity's other map)
    assert sorted((c.event.map, c.message_id) for c in sent) == [
        ("customers", f"{by_map['customers'].event_id}|customers"),
        ("customers-by-name", f"{by_map['customers'].event_id}|customers-by-name"),
    ]
    assert sent[0].event.keys != sent[1].event.keys
    # a redelivery makes the same message ids: the queue's duplicate detection drops it
    again = MemoryQueue()
    asyncio.run(ingest(parse_fno(raw("fno_data_update"), maps).events, maps, again))
    assert sorted(c.message_id for c in again.sent[0]) == sorted(c.message_id for c in sent)


def test_a_map_whose_key_the_event_lacks_is_refused_for_that_map_only(customers: TableMap) -> None:
    by_party = sibling(customers, "customers-by-party", "PartyNumber", "msdyn_partynumber")
    maps = maps_with(by_party)
    for payload in ("fno_data_update", "fno_data_delete", "fno_business_create"):
        parsed = parse_fno(raw(payload), maps)
        [event] = parsed.events
        assert event.map == "customers" and event.keys["CustomerAccount"] == "US-900", payload
        [skipped] = parsed.skipped
        assert skipped.event_id == event.event_id
        assert "'customers-by-party'" in skipped.reason and "PartyNumber".lower() in skipped.reason.lower(), payload
        changes = asyncio.run(_queued(parsed.events, maps))
        assert [c.event.map for c in changes] == ["customers"]


async def _queued(events: Any, maps: MapSet) -> Any:
    queue = MemoryQueue()
    await ingest(events, maps, queue)
    return queue.sent[0]


def test_an_event_no_map_can_read_is_refused_naming_every_map(customers: TableMap) -> None:
    maps = maps_with(sibling(customers, "customers-by-party", "PartyNumber", "msdyn_partynumber"),
                     sibling(customers, "customers-by-tax", "TaxExemptNumber", "msdyn_taxexemptnumber"),
                     drop_customers=True)
    with pytest.raises(PayloadError) as caught:
        parse_fno(raw("fno_data_update"), maps)
    assert "map 'customers-by-party'" in caught.value.message and "mserp_partynumber" in caught.value.message
    assert "map 'customers-by-tax'" in caught.value.message and "mserp_taxexemptnumber" in caught.value.message
    # one map alone: its own message, as before
    single = maps_with(sibling(customers, "customers-by-party", "PartyNumber", "msdyn_partynumber"),
                       drop_customers=True)
    with pytest.raises(PayloadError, match=r"^.*key field mserp_partynumber missing$"):
        parse_fno(raw("fno_data_update"), single)


def test_a_business_event_goes_to_every_map_listing_it(customers: TableMap) -> None:
    by_name = sibling(customers, "customers-by-name", "OrganizationName", "name")
    maps = maps_with(by_name)
    parsed = parse_fno(raw("fno_business_create"), maps)
    by_map = {e.map: e.keys for e in parsed.events}
    assert by_map == {"customers": {"CustomerAccount": "US-900", "dataAreaId": "usmf"},
                      "customers-by-name": {"OrganizationName": "Capture Ltd", "dataAreaId": "usmf"}}
    assert len({e.event_id for e in parsed.events}) == 1 and parsed.skipped == []


def test_every_map_disabled_still_parses_and_routing_says_why(customers: TableMap) -> None:
    off = customers.model_copy(update={"enabled": False})
    maps = MapSet([LoadedMap(off if item.map.name == "customers" else item.map, item.file)
                   for item in load_maps([ROOT / "maps"]).maps])
    parsed = parse_fno(raw("fno_data_update"), maps)
    assert sorted(e.map or "" for e in parsed.events) == ["customer-persons", "customers"]
    reasons = [s.reason for e in parsed.events for s in route(e, maps).skipped]
    assert reasons == [f"map {e.map!r} of CustomersV3 is not enabled or syncs nothing from fno" for e in parsed.events]


def test_a_batch_is_read_per_event_and_a_disabled_sibling_takes_no_copy() -> None:
    maps = maps_with()
    body = json.loads(raw("fno_data_update"))
    parsed = parse_fno(json.dumps([body, body]).encode(), maps)
    assert [e.map for e in parsed.events] == ["customers", "customers"]
