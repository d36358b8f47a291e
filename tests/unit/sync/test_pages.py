"""A page of an initial sync or reconciliation (core.sync.pages) over in-memory sides (fakes of core's own
side port): what is matched, written, reported and failed, per row, and what the run's state machine does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.connectors.errors import ConnectorError
from core.maps import MapSet, TableMap, project, record_key
from core.maps.model import Side
from core.sync.compare import canon
from core.sync.pages import Gate, PageWork
from core.sync.runs import PageMark, Run, RunStateError, Tally, pass_done, progress_of
from core.sync.sides import SourcePage, SourceRow, Written
from tests.unit.sync.fakes import MemoryErrors
from tests.unit.sync.world import MAPS, customer, vendor

maps = MapSet.load([MAPS])
customers = maps["customers"]
vendors = maps["vendors"]


class MemorySide:
    """One side's records of one map, by canonical key; every write and delete is recorded."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.rows: dict[tuple[str, ...], SourceRow] = {}
        self.writes: list[tuple[tuple[str, ...] | None, dict[str, Any], bool]] = []  # key, changes, update
        self.deletes: list[tuple[str, ...]] = []
        self.refuse: set[str] = set()  # values of a name column this side refuses (a 400)
        self.pages: list[int] = []  # rows per create_page call

    def put(self, table_map: TableMap, record: dict[str, Any], row_id: str | None = None) -> tuple[str, ...]:
        key = record_key(table_map, self.side, record)
        self.rows[key] = SourceRow(record, key, row_id=row_id, fno_key=None)
        return key

    async def read_page(self, table_map: TableMap, *, next_link: str | None, page_size: int) -> SourcePage:
        keys = sorted(self.rows)
        start = int(next_link or 0)
        chunk = keys[start:start + page_size]
        more = start + page_size < len(keys)
        return SourcePage([self.rows[k] for k in chunk], str(start + page_size) if more else None, filtered=True)

    async def read_keys(self, table_map: TableMap, keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], SourceRow]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def write(self, table_map: TableMap, link: Any, projected: Mapping[str, Any], changes: Mapping[str, Any],
                    *, recreate: bool = False) -> Written:
        if any(str(v) in self.refuse for v in changes.values()):
            raise ConnectorError("the value is not valid", status=400, code="0x80040237")
        key = link.key if link is not None else None
        self.writes.append((key, dict(changes), link is not None))
        if self.side == "fno":
            return Written(None, None, created=link is None)
        return Written(link.dataverse_id if link is not None else f"id-{len(self.writes)}", None, created=link is None)

    async def create_page(self, table_map: TableMap, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        self.pages.append(len(rows))
        out: list[Any] = []
        for row in rows:
            try:
                out.append(await self.write(table_map, None, row, row))
            except ConnectorError as error:
                out.append(error)
        return out

    async def delete(self, table_map: TableMap, link: Any, key: tuple[str, ...]) -> bool:
        self.deletes.append(key)
        return self.rows.pop(key, None) is not None

    async def read_linked(self, table_map: TableMap, link: Any) -> dict[str, Any] | None:
        row = self.rows.get(link.key)
        return row.record if row else None


def account_of(record: dict[str, Any], table_map: TableMap = customers) -> dict[str, Any]:
    """The Dataverse record of an F&O record, lookups as key references (as the Dataverse side reads it)."""
    return project(table_map, "to_dataverse", record, maps=maps)


def world(kind: str = "initial", *, source: Side = "fno", table_map: TableMap = customers,
          dry_run: bool = False) -> tuple[Run, MemorySide, MemorySide, MemoryErrors]:
    run = Run(id="r1", kind=kind, maps=[table_map.name], sources={table_map.name: source},  # type: ignore[arg-type]
              dry_run=dry_run)
    return run, MemorySide("fno"), MemorySide("dataverse"), MemoryErrors()


class MemoryLinkWriter:
    """Link puts, in order, with what each side's writes had done when they were made."""

    def __init__(self, *sides: MemorySide) -> None:
        self.sides = sides
        self.puts: list[tuple[list[Any], int]] = []  # (links, writes made before this put)

    async def put_many(self, links: Sequence[Any]) -> None:
        self.puts.append((list(links), sum(len(side.writes) for side in self.sides)))


def work(run: Run, fo: MemorySide, dv: MemorySide, errors: MemoryErrors, table_map: TableMap = customers,
         pass_: str = "rows", links: MemoryLinkWriter | None = None) -> PageWork:
    return PageWork(run, table_map, pass_, {"fno": fo, "dataverse": dv}, maps=maps,  # type: ignore[arg-type]
                    errors=errors, gate=Gate(), throttled=lambda: 0, links=links)


async def page_of(side: MemorySide, table_map: TableMap = customers) -> list[SourceRow]:
    return (await side.read_page(table_map, next_link=None, page_size=1000)).rows


# -- initial sync ------------------------------------------------------------------------------------
async def test_initial_sync_creates_what_is_missing_links_what_matches_and_writes_only_what_differs() -> None:
    run, fo, dv, errors = world()
    for account in ("US-001", "US-002", "US-003"):
        fo.put(customers, customer(account))
    dv.put(customers, account_of(customer("US-002")), row_id="row-2")  # equal
    dv.put(customers, account_of(customer("US-003", OrganizationName="Old name")), row_id="row-3")  # differs

    result = await work(run, fo, dv, errors).rows(await page_of(fo), filtered=True)

    assert result.tally == Tally(read=3, written=2, matched=1, differs=1, missing_on_target=1)
    created = [w for w in dv.writes if not w[2]]
    updated = [w for w in dv.writes if w[2]]
    assert len(created) == 1 and created[0][1]["accountnumber"] == "US-001"
    assert dv.pages == [1]  # the missing records are created as a page (CreateMultiple), not one by one
    # The differing row gets only its differing column.
    assert updated == [(("USMF", "US-003"), {"name": "Contoso Retail"}, True)]
    linked = {link.key: link for link in result.links}
    assert set(linked) == {("USMF", "US-001"), ("USMF", "US-002"), ("USMF", "US-003")}
    assert linked[("USMF", "US-002")].dataverse_id == "row-2" and linked[("USMF", "US-003")].dataverse_id == "row-3"
    assert all(link.hashes.get("fno") and link.hashes.get("dataverse") for link in linked.values())
    assert linked[("USMF", "US-003")].values["dataverse"]["name"] == canon("Contoso Retail")
    differs = [n for n in result.notes if n.outcome == "differs"]
    assert [(n.key, n.columns) for n in differs] == [(("USMF", "US-003"), ("name",))]
    assert errors.entries == []


async def test_a_rerun_of_a_synced_page_writes_nothing() -> None:
    run, fo, dv, errors = world()
    for account in ("US-001", "US-002"):
        fo.put(customers, customer(account))
        dv.put(customers, account_of(customer(account)), row_id=f"row-{account}")

    result = await work(run, fo, dv, errors).rows(await page_of(fo), filtered=True)

    assert dv.writes == []
    assert result.tally == Tally(read=2, matched=2)


async def test_one_bad_row_in_a_page_of_100_fails_alone_into_the_error_log_with_the_run() -> None:
    run, fo, dv, errors = world()
    for n in range(100):
        fo.put(customers, customer(f"US-{n:03d}", OrganizationName="Refused name" if n == 42 else f"Name {n}"))
    dv.refuse = {"Refused name"}

    result = await work(run, fo, dv, errors).rows(await page_of(fo), filtered=True)

    assert result.tally.written == 99 and result.tally.failed == 1
    assert len(dv.writes) == 99 and dv.pages == [100]
    [entry] = errors.entries
    assert entry.key == "USMF|US-042" and entry.run_id == "r1" and entry.map == "customers"
    assert "the value is not valid" in entry.text and entry.target_code == "0x80040237"
    assert entry.session_id.startswith("customers|b")
    assert entry.change  # a change event that a resubmit can send to live sync
    assert ("USMF", "US-042") not in {link.key for link in result.links}


async def test_a_dry_run_writes_nothing_and_samples_what_it_would_write() -> None:
    run, fo, dv, errors = world(dry_run=True)
    for n in range(8):
        fo.put(customers, customer(f"US-{n:03d}"))

    result = await work(run, fo, dv, errors).rows(await page_of(fo), filtered=True)

    assert dv.writes == [] and result.links == []
    assert result.tally.written == 8 and result.tally.missing_on_target == 8
    samples = [n for n in result.notes if n.outcome == "sample"]
    assert len(samples) == 5 and samples[0].values and samples[0].values["accountnumber"] == "US-000"


async def test_rows_the_source_filter_leaves_out_are_skipped_when_the_source_could_not_filter() -> None:
    run, fo, dv, errors = world()
    fo.put(customers, customer("US-001"))
    fo.put(customers, customer("US-002", PartyType="Person"))  # the map syncs organisations only

    result = await work(run, fo, dv, errors).rows(await page_of(fo), filtered=False)

    assert result.tally.skipped == 1 and result.tally.written == 1
    assert [w[1]["accountnumber"] for w in dv.writes] == ["US-001"]


async def test_when_the_target_is_the_primary_a_differing_row_is_reported_and_kept() -> None:
    # vendors: F&O is the primary and wins conflicts; a run reading Dataverse does not overwrite F&O.
    run, fo, dv, errors = world(source="dataverse", table_map=vendors)
    fo_record = vendor("V-001")
    fo.put(vendors, fo_record)
    dv.put(vendors, {**account_of(fo_record, vendors), "msdyn_vendorname": "Changed in Dataverse"}, row_id="v-row")

    result = await work(run, fo, dv, errors, vendors).rows(await page_of(dv, vendors), filtered=True)

    assert fo.writes == []
    assert result.tally.differs == 1 and result.tally.written == 0
    [note] = [n for n in result.notes if n.outcome == "differs"]
    assert note.columns == ("VendorOrganizationName",) and "primary" in (note.detail or "")


async def test_writes_to_fno_save_their_links_first_so_their_echoes_are_recognised() -> None:
    # Dataverse -> F&O: F&O raises an event for every write and cannot be told to leave ours out.
    run, fo, dv, errors = world(source="dataverse")
    for n in range(3):
        dv.put(customers, account_of(customer(f"US-00{n}")), row_id=f"row-{n}")
    fo.refuse = {"Refused name"}
    dv.put(customers, {**account_of(customer("US-009")), "name": "Refused name"}, row_id="row-9")
    links = MemoryLinkWriter(fo, dv)

    result = await work(run, fo, dv, errors, links=links).rows(await page_of(dv), filtered=True)

    [(early, writes_before)] = links.puts
    assert writes_before == 0  # before any write
    assert {link.key for link in early} == {("USMF", f"US-00{n}") for n in (0, 1, 2, 9)}
    assert all(link.fno_key == {"dataAreaId": "usmf", "CustomerAccount": link.key[1]} and link.hashes.get("fno")
               for link in early)
    assert len(fo.writes) == 3 and result.tally.written == 3 and result.tally.failed == 1
    # The refused row's link is put back (it had no F&O record: a tombstone); the others are not put again.
    [restored] = result.links
    assert restored.key == ("USMF", "US-009") and restored.state == "deleted"


# -- reconciliation ----------------------------------------------------------------------------------
async def test_compare_reports_missing_and_differing_rows_and_writes_nothing() -> None:
    run, fo, dv, errors = world("compare")
    fo.put(customers, customer("US-001"))
    fo.put(customers, customer("US-002", CreditLimit="2500.1234567891"))
    dv.put(customers, account_of(customer("US-002")), row_id="row-2")

    result = await work(run, fo, dv, errors).rows(await page_of(fo), filtered=True)

    assert dv.writes == [] and result.links == []
    assert result.tally == Tally(read=2, differs=1, missing_on_target=1)
    kinds = {(n.outcome, n.key, n.columns) for n in result.notes}
    assert kinds == {("missing_on_target", ("USMF", "US-001"), ()), ("differs", ("USMF", "US-002"), ("creditlimit",))}


async def test_orphans_are_reported_by_compare_and_removed_by_repair() -> None:
    for kind, removed in (("compare", []), ("repair", [("USMF", "US-009")])):
        run, fo, dv, errors = world(kind)
        fo.put(customers, customer("US-001"))
        dv.put(customers, account_of(customer("US-001")), row_id="row-1")
        dv.put(customers, account_of(customer("US-009")), row_id="row-9")  # gone from F&O

        result = await work(run, fo, dv, errors, pass_="orphans").orphans(await page_of(dv))

        assert result.tally.missing_on_source == 1
        assert [n.key for n in result.notes] == [("USMF", "US-009")]
        assert dv.deletes == removed
        assert result.tally.deleted == len(removed)
        if removed:
            [tombstone] = result.links
            assert tombstone.state == "deleted" and tombstone.dataverse_id == "row-9"


# -- the run -----------------------------------------------------------------------------------------
def test_a_run_passes_maps_in_order_then_patches_then_looks_for_orphans() -> None:
    run = Run(id="r", kind="repair", maps=["a", "b"], sources={"a": "fno", "b": "fno"}, deferred={"a": ["x"]})
    assert run.passes() == [("a", "rows"), ("b", "rows"), ("a", "patch"), ("a", "orphans"), ("b", "orphans")]
    assert run.after("b", "rows") == ("a", "patch") and run.after("b", "orphans") is None
    initial = Run(id="r", kind="initial", maps=["a"], sources={"a": "fno"})
    assert initial.passes() == [("a", "rows")]


def test_run_states_move_only_as_the_machine_allows() -> None:
    run = Run(id="r", kind="initial", maps=["a"], sources={"a": "fno"})
    run.move("running")
    run.move("completed", "done")
    assert run.finished_at is not None
    with pytest.raises(RunStateError):
        run.move("cancelled")


def test_a_pass_is_done_when_every_page_up_to_the_last_is_done() -> None:
    done = [PageMark(0, "done", False, Tally()), PageMark(2, "done", True, Tally())]
    assert not pass_done(done)
    assert not pass_done([*done, PageMark(1, "read", False, Tally())])
    assert pass_done([*done, PageMark(1, "done", False, Tally())])
    assert not pass_done([])


def test_progress_counts_rows_and_estimates_the_rest_once_the_last_page_is_known() -> None:
    run = Run(id="r", kind="initial", maps=["a"], sources={"a": "fno"}, status="running")
    began = datetime.now(UTC) - timedelta(seconds=10)
    marks = {"rows": [PageMark(0, "done", False, Tally(read=1000, written=990, failed=10)),
                      PageMark(1, "read", True, Tally(read=500))]}
    progress = progress_of(run, "a", marks, started={"rows": began})  # type: ignore[arg-type]
    assert progress.status == "running" and progress.pages_done == 1 and progress.last_page
    assert progress.tally.written == 990 and progress.tally.failed == 10
    assert progress.rows_per_s is not None and 90 <= progress.rows_per_s <= 110
    assert progress.eta_s is not None and 4 <= progress.eta_s <= 6


async def test_the_write_gate_halves_on_throttling_and_grows_back_slowly() -> None:
    import asyncio

    gate = Gate(8, low=2, high=10)
    inside = 0
    most = 0

    async def write() -> None:
        nonlocal inside, most
        async with gate:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(write() for _ in range(40)))
    assert most == 8
    gate.throttled()
    gate.throttled()
    assert gate.limit == 2
    gate.throttled()
    assert gate.limit == 2  # never below the floor
    most = 0
    await asyncio.gather(*(write() for _ in range(20)))
    assert most == 2
    for _ in range(20):
        gate.went_well()
    assert gate.limit == 10  # up to the ceiling, one step per good write
