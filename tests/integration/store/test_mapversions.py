"""Map revisions in Azurite (core.store.mapversions): numbered per map, newest first, create-only (of two writers
of one revision, one wins), and a long body split over several properties comes back exactly, decimals and all."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.store.mapversions import MAX_UNITS, PART_UNITS, TABLE, BodyTooLarge, MapVersionStore, RevisionTaken
from core.store.tables import Tables

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


async def test_revisions_are_numbered_per_map_and_listed_newest_first_without_bodies(tables: Tables) -> None:
    store = MapVersionStore(tables)
    assert await store.latest_revisions() == {} and await store.latest("customers") == 0
    for revision in (1, 2, 3):
        await store.add("customers", revision, f'{{"name": "customers", "n": {revision}}}', version=f"1.{revision}",
                        by="ana", reason=f"step {revision}", at=T0)
    await store.add("vendors", 1, '{"name": "vendors"}', version="2.0", by="bob", at=T0)
    assert await store.latest_revisions() == {"customers": 3, "vendors": 1}
    assert await store.latest("customers") == 3
    history = await store.history("customers")
    assert [(r.revision, r.version, r.by, r.reason, r.at, r.body) for r in history] == [
        (3, "1.3", "ana", "step 3", T0, None), (2, "1.2", "ana", "step 2", T0, None),
        (1, "1.1", "ana", "step 1", T0, None)]
    second = await store.get("customers", 2)
    assert second is not None and second.body == '{"name": "customers", "n": 2}'
    assert await store.get("customers", 4) is None and await store.history("contacts") == []


async def test_a_revision_is_stored_once_the_second_writer_is_refused(tables: Tables) -> None:
    store = MapVersionStore(tables)
    await store.add("customers", 1, '{"name": "customers"}', version="1", by="ana")
    with pytest.raises(RevisionTaken):
        await store.add("customers", 1, '{"name": "customers", "other": true}', version="1", by="bob")
    results = await asyncio.gather(*(store.add("customers", 2, f'{{"by": "{who}"}}', version="2", by=who)
                                     for who in ("ana", "bob", "eve")), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["MapRevision", "RevisionTaken", "RevisionTaken"]
    kept = await store.get("customers", 2)
    winner = next(r for r in results if not isinstance(r, BaseException))
    assert kept is not None and kept.by == winner.by and kept.body == f'{{"by": "{winner.by}"}}'
    first = await store.get("customers", 1)
    assert first is not None and first.by == "ana"  # never overwritten


async def test_a_long_body_is_split_and_comes_back_exactly(tables: Tables) -> None:
    store = MapVersionStore(tables)
    # Decimals with more digits than a float keeps, characters outside the BMP (two UTF-16 units each) across
    # the part boundaries, and formatting that a parse and re-dump would lose.
    body = ('{\n  "name": "customers",\n  "limits": [' + ", ".join(
        f"12345678901234567.{n:010d}" for n in range(4000)) + '],\n  "description": "' + "déjà vu 🐘 " * 9000
        + '",\n  "scale":   1.50\n}')
    assert len(body.encode("utf-16-le")) // 2 > 4 * PART_UNITS
    await store.add("customers", 1, body, version="1", by="ana")
    back = await store.get("customers", 1)
    assert back is not None and back.body == body
    values = json.loads(back.body, parse_float=Decimal)
    assert values["limits"][3999] == Decimal("12345678901234567.0000003999") and values["scale"] == Decimal("1.50")
    row = await (await tables.table(TABLE)).get_entity("customers", "0000000001")
    assert row["BodyParts"] > 4 and all(len(row[f"Body{n}"].encode("utf-16-le")) <= 2 * PART_UNITS
                                        for n in range(row["BodyParts"]))


async def test_a_body_longer_than_a_row_holds_is_refused_before_anything_is_stored(tables: Tables) -> None:
    store = MapVersionStore(tables)
    with pytest.raises(BodyTooLarge) as refused:
        await store.add("customers", 1, "x" * (MAX_UNITS + 1), version="1", by="ana")
    assert "at most 450,000" in str(refused.value)
    assert await store.latest("customers") == 0
