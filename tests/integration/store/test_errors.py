"""Error log against Azurite: record, upsert of a repeated failure, get, list, status, long texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.store.errors import ErrorEntry, ErrorLog, ErrorNotFound, entry_rows
from core.store.tables import Tables

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def failure(id: str, *, map: str = "customers", category: str = "application", text: str = "boom",
            at: datetime = T0, attempts: int = 1) -> ErrorEntry:
    return ErrorEntry(id=id, map=map, key="USMF|US-001", source="fno", operation="update",
                      category=category, text=text, attempts=attempts, change='{"v":1}',  # type: ignore[arg-type]
                      session_id="customers|USMF|US-001", first_at=at, last_at=at, target_status=400,
                      target_code="0x80040237")


async def test_record_get_and_upsert(tables: Tables) -> None:
    log = ErrorLog(tables)
    assert await log.get("evt-1|customers") is None
    await log.record(failure("evt-1|customers"))
    await log.record(failure("evt-1|customers", text="second", at=T0 + timedelta(minutes=5), attempts=2))
    got = await log.get("evt-1|customers")
    assert got is not None
    assert (got.text, got.attempts, got.first_at, got.last_at) == ("second", 2, T0, T0 + timedelta(minutes=5))
    assert (got.target_status, got.target_code, got.status, got.session_id) == (
        400, "0x80040237", "open", "customers|USMF|US-001")


async def test_full_text_kept_whole(tables: Tables) -> None:
    log = ErrorLog(tables)
    text = "".join(f"line {i}: the target said no \u00e9\U0001f600\n" for i in range(4000))  # > 100 KB
    assert len(text.encode()) > 100_000
    await log.record(failure("big", text=text))
    got = await log.get("big")
    assert got is not None and got.text == text
    huge = "y" * 1_500_000  # more than one row holds: continuation rows
    await log.record(failure("huge", text=huge))
    again = await log.get("huge")
    assert again is not None and again.text == huge
    await log.record(failure("huge", text="short now"))
    shorter = await log.get("huge")
    assert shorter is not None and shorter.text == "short now"


async def test_list_filters_and_status(tables: Tables) -> None:
    log = ErrorLog(tables)
    await log.record(failure("a", at=T0))
    await log.record(failure("b", at=T0 + timedelta(minutes=1), category="system"))
    await log.record(failure("c", at=T0 + timedelta(minutes=2), map="vendors"))
    assert [e.id for e in await log.list()] == ["c", "b", "a"]
    assert [e.id for e in await log.list(map="customers")] == ["b", "a"]
    assert [e.id for e in await log.list(category="system")] == ["b"]
    assert [e.id for e in await log.list(limit=1)] == ["c"]
    await log.set_status("a", "discarded")
    assert [e.id for e in await log.list(map="customers")] == ["b"]
    assert [e.id for e in await log.list(status="discarded")] == ["a"]
    assert len(await log.list(status=None)) == 3
    with pytest.raises(ErrorNotFound):
        await log.set_status("nope", "discarded")
    with pytest.raises(ValueError, match="status"):
        await log.list(status="closed")
    with pytest.raises(ValueError, match="category"):
        await log.list(category="cosmic")


def test_every_row_fits_table_storage() -> None:
    # Azurite stores bigger entities than the service accepts, so the limits are checked on the rows.
    big = failure("x", text="\u00e9" * 3_000_000)
    big.change = "c" * 256 * 1024
    rows = entry_rows(big)
    assert len(rows) > 2
    for row in rows:
        utf16 = {k: len(str(v).encode("utf-16-le")) for k, v in row.items()}
        assert max(utf16.values()) <= 64 * 1024
        assert sum(utf16.values()) + 8 * len(row) < 1024 * 1024
    too_big = failure("y")
    too_big.change = "c" * (256 * 1024 + 1)
    with pytest.raises(ValueError, match="change"):
        entry_rows(too_big)
