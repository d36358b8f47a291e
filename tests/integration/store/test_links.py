"""Links against Azurite: insert, get, find by Dataverse id, etag-guarded update and delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.store.links import Link, LinkConflict, LinkStore, LinkTooLarge
from core.store.tables import Tables

KEY = ("USMF", "US-001")
DV_ID = "6F9619FF-8B86-D011-B42D-00C04FC964FF"


def new_link() -> Link:
    return Link(
        map="customers", key=KEY, dataverse_id=DV_ID,
        fno_key={"dataAreaId": "usmf", "CustomerAccount": "US-001"},
        values={"fno": {"CreditLimit": "1234.5678901234", "Name": "Contoso"}},
        versions={"fno": "5637144576"}, hashes={"fno": "abc"},
    )


async def test_insert_get_and_find(tables: Tables) -> None:
    links = LinkStore(tables)
    assert await links.get("customers", KEY) is None
    saved = await links.save(new_link())
    assert saved.etag and saved.updated_at is not None and saved.updated_at.tzinfo is not None
    got = await links.get("customers", KEY)
    assert got is not None
    assert got.key == KEY and got.values == {"fno": {"CreditLimit": "1234.5678901234", "Name": "Contoso"}}
    assert got.fno_key == {"dataAreaId": "usmf", "CustomerAccount": "US-001"}
    assert got.versions == {"fno": "5637144576"} and got.hashes == {"fno": "abc"} and got.etag == saved.etag
    found = await links.find("customers", "dataverse", DV_ID.lower())
    assert found is not None and found.key == KEY
    assert await links.find("customers", "dataverse", "00000000-0000-0000-0000-000000000000") is None
    assert await links.find("vendors", "dataverse", DV_ID) is None


async def test_key_with_reserved_characters_round_trips(tables: Tables) -> None:
    links = LinkStore(tables)
    key = ("USMF", "A/B#C?D|E%F")
    await links.save(Link(map="customers", key=key))
    got = await links.get("customers", key)
    assert got is not None and got.key == key


async def test_second_insert_conflicts(tables: Tables) -> None:
    links = LinkStore(tables)
    await links.save(new_link())
    with pytest.raises(LinkConflict):
        await links.save(new_link())


async def test_concurrent_updates_one_wins(tables: Tables) -> None:
    links = LinkStore(tables)
    await links.save(new_link())
    first = await links.get("customers", KEY)
    second = await links.get("customers", KEY)
    assert first is not None and second is not None
    first.versions["dataverse"] = "1"
    second.versions["dataverse"] = "2"
    results = await asyncio.gather(links.save(first), links.save(second), return_exceptions=True)
    assert sum(isinstance(r, LinkConflict) for r in results) == 1
    winner = next(r for r in results if isinstance(r, Link))
    stored = await links.get("customers", KEY)
    assert stored is not None and stored.versions["dataverse"] == winner.versions["dataverse"]
    # The winner can go on writing with its new etag.
    winner.state = "deleted"
    again = await links.save(winner)
    assert again.etag != winner.etag
    stored = await links.get("customers", KEY)
    assert stored is not None and stored.state == "deleted"


async def test_delete_guarded_by_etag(tables: Tables) -> None:
    links = LinkStore(tables)
    saved = await links.save(new_link())
    stale = await links.get("customers", KEY)
    assert stale is not None
    saved.hashes["dataverse"] = "x"
    await links.save(saved)
    with pytest.raises(LinkConflict):
        await links.delete(stale)
    current = await links.get("customers", KEY)
    assert current is not None
    await links.delete(current)
    assert await links.get("customers", KEY) is None
    assert await links.find("customers", "dataverse", DV_ID) is None
    with pytest.raises(LinkConflict):
        await links.save(current)  # updating a deleted link


async def test_moved_dataverse_id_leaves_no_stale_find(tables: Tables) -> None:
    links = LinkStore(tables)
    saved = await links.save(new_link())
    saved.dataverse_id = "11111111-1111-1111-1111-111111111111"
    await links.save(saved)
    assert await links.find("customers", "dataverse", DV_ID) is None
    assert (await links.find("customers", "dataverse", saved.dataverse_id)) is not None


async def test_oversized_values_refused_with_clear_error(tables: Tables) -> None:
    links = LinkStore(tables)
    link = Link(map="customers", key=KEY, values={"fno": {"Notes": "x" * 40_000}})
    with pytest.raises(LinkTooLarge, match="values"):
        await links.save(link)


async def test_find_refuses_fno_side(tables: Tables) -> None:
    with pytest.raises(ValueError, match="side"):
        await LinkStore(tables).find("customers", "fno", "x")


async def test_typed_values_are_kept_in_wire_form(tables: Tables) -> None:
    links = LinkStore(tables)
    values = {"CreditLimit": Decimal("-98765.0123456789"), "When": datetime(2026, 11, 21, 9, 5, tzinfo=UTC)}
    await links.save(Link(map="customers", key=KEY, values={"fno": values}))
    got = await links.get("customers", KEY)
    assert got is not None
    assert got.values["fno"] == {"CreditLimit": "-98765.0123456789", "When": "2026-11-21T09:05:00Z"}
    with pytest.raises(ValueError, match=r"values.*float"):
        await links.save(Link(map="customers", key=("USMF", "F"), values={"fno": {"x": 1.5}}))


async def test_gathered_reads_and_saves_of_many_records_at_once(tables: Tables) -> None:
    """Records applied side by side: their saves share transactions, and each
    still gets its own answer (a link changed behind one does not fail the others)."""
    links = LinkStore(tables, gather=True)
    plain = LinkStore(tables)
    keys = [("USMF", f"G-{n:03d}") for n in range(40)] + [("USMF", "it's/#?")]
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(len(keys))]
    made = await asyncio.gather(*(links.save(Link(map="customers", key=k, dataverse_id=i, values={"fno": {"n": n}}))
                                  for n, (k, i) in enumerate(zip(keys, ids, strict=True))))
    assert all(link.etag for link in made)
    got = await asyncio.gather(*(links.get("customers", k) for k in keys), links.get("customers", ("USMF", "none")))
    assert [g.values["fno"]["n"] for g in got[:-1] if g is not None] == list(range(len(keys)))
    assert got[-1] is None
    found = await asyncio.gather(*(links.find("customers", "dataverse", i) for i in ids))
    assert [f.key if f else None for f in found] == keys
    # someone else moves one link on; the gathered update of all of them refuses only that one
    behind = await plain.get("customers", keys[7])
    assert behind is not None
    await plain.save(behind)
    for link in made:
        link.values = {"fno": {"n": -1}}
    results = await asyncio.gather(*(links.save(link) for link in made), return_exceptions=True)
    assert isinstance(results[7], LinkConflict)
    assert all(isinstance(r, Link) for n, r in enumerate(results) if n != 7)
    again = await plain.get("customers", keys[8])
    assert again is not None and again.values == {"fno": {"n": -1}}
    # a too-large link fails alone too
    huge = Link(map="customers", key=("USMF", "HUGE"), values={"fno": {"memo": "x" * 40_000}})
    small = Link(map="customers", key=("USMF", "SMALL"))
    outcome = await asyncio.gather(links.save(huge), links.save(small), return_exceptions=True)
    assert isinstance(outcome[0], LinkTooLarge) and isinstance(outcome[1], Link)


async def test_a_maps_links_spread_over_small_partitions_and_are_found(tables: Tables) -> None:
    # One partition per map would cap a map at Table Storage's ~2,000 entities/s per partition (and Azurite
    # slows down as a partition grows): links are spread by a hash of their key, index rows by row id.
    store = LinkStore(tables)
    links = [Link(map="customers", key=("USMF", f"SP-{n:04d}"), dataverse_id=f"{n:08x}-0000-4000-8000-000000000000",
                  values={"fno": {"n": n}}) for n in range(300)]
    await store.put_many(links)
    table = await tables.table("links")
    partitions = {e["PartitionKey"] async for e in table.list_entities(select=["PartitionKey"])}
    assert len(partitions) > 32 and all(p.startswith("customers|p") for p in partitions)
    for link in links[::37]:
        found = await store.get("customers", link.key)
        assert found is not None and found.map == "customers" and found.values == {"fno": {"n": int(link.key[1][3:])}}
        assert await store.find("customers", "dataverse", link.dataverse_id or "") == found
