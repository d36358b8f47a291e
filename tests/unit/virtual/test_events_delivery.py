"""Delivering the virtual tables' F&O event outbox (core.virtual.events.deliver) with in-memory fakes of its ports
(outbox, Dataverse, the F&O source, the error log): a transient failure keeps the table's order and is retried; a
refusal, or a row failing `max_attempts` runs, goes to the error log and the table's later rows go on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from core.connectors.errors import AuthFailed, ThrottledError, TransientError, ValidationFailed
from core.ops.errors import VT_NOTIFY
from core.sync.domain import ErrorEntry
from core.virtual.catalog import load_folder
from core.virtual.events import Outbox, Pending, deliver, error_id, restore
from core.virtual.filter import Node
from core.virtual.keys import id_of
from core.virtual.model import VirtualTable
from core.virtual.notify import DataverseEvents, DataverseTable
from core.virtual.service import VirtualService
from core.virtual.source import SourceError

ROOT = Path(__file__).resolve().parents[3]
TABLE = "FnoCustomerGroups"
REFUSAL = '{"error":{"code":"0x80040203","message":"OnExternalUpdated is not enabled for the virtual table"}}'


class MemoryOutbox(Outbox):
    """The outbox's rows by (partition, row key), read back in row-key order as Table Storage does."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def put(self, entity_set: str, row_key: str, action: str, group: str) -> None:
        key = {"dataAreaId": "usmf", "CustomerGroupId": group}
        self.rows[(entity_set, row_key)] = {"PartitionKey": entity_set, "RowKey": row_key, "Action": action,
                                            "Id": str(id_of(groups(), key)), "Key": json.dumps(key),
                                            "EventId": f"fno:{group}", "Attempts": 0}

    async def add(self, items: Sequence[Pending]) -> None:
        raise AssertionError("not used by deliver")

    async def waiting(self, entity_set: str, limit: int) -> list[dict[str, Any]]:
        return [dict(r) for (p, _), r in sorted(self.rows.items()) if p == entity_set][:limit]

    async def done(self, entry: Mapping[str, Any]) -> None:
        del self.rows[(entry["PartitionKey"], entry["RowKey"])]

    async def failed(self, entry: Mapping[str, Any], problem: str) -> None:
        row = self.rows[(entry["PartitionKey"], entry["RowKey"])]
        row.update(Attempts=int(row["Attempts"]) + 1, LastError=problem)

    async def restore(self, row: Mapping[str, Any]) -> None:
        self.rows[(row["PartitionKey"], row["RowKey"])] = {**row, "Attempts": 0}


class MemoryErrorLog:
    def __init__(self) -> None:
        self.entries: dict[str, ErrorEntry] = {}

    async def record(self, entry: ErrorEntry) -> ErrorEntry:
        self.entries[entry.id] = entry
        return entry


class ScriptedDataverse(DataverseEvents):
    """Tells succeed unless `failing` names the group: then its error is raised (each time, or `times` times)."""

    def __init__(self, failing: dict[str, Exception] | None = None, times: int | None = None) -> None:
        self.failing = failing or {}
        self.times = times
        self.told: list[tuple[str, str]] = []

    async def table_of(self, entity_set: str) -> DataverseTable | None:
        return DataverseTable("dwvt_fnocustomergroup", "dwvt_fnocustomergroupid",
                              {"CustomerGroupId": "dwvt_customergroupid", "dataAreaId": "dwvt_dataareaid"})

    async def tell(self, action: str, target: Mapping[str, Any]) -> None:
        group = str(target["dwvt_customergroupid"])
        if group in self.failing and (self.times is None or self.times > 0):
            self.times = None if self.times is None else self.times - 1
            raise self.failing[group]
        self.told.append((action, group))


class NoRows:
    """The F&O source: no row found (the event's key is told), or `error` raised as a source would."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def rows(self, where: Node | None, orderby: Any, offset: int, limit: int | None) -> list[Any]:
        if self.error is not None:
            raise self.error
        return []


class Service:
    def __init__(self, source: NoRows | None = None) -> None:
        self.tables = {TABLE: groups()}
        self._source = source or NoRows()

    def source(self, table: VirtualTable) -> NoRows:
        return self._source


def groups() -> VirtualTable:
    return next(t for t in load_folder(ROOT / "virtualtables") if t.entity_set == TABLE)


def refused(status: int = 400) -> ValidationFailed:
    return ValidationFailed("OnExternalUpdated is not enabled for the virtual table", status=status,
                            code="0x80040203", text=REFUSAL, method="POST", url="https://org/api/data/v9.2/OnExternalUpdated")


def run(outbox: MemoryOutbox, dataverse: ScriptedDataverse, errors: MemoryErrorLog, *, service: Service | None = None,
        max_attempts: int = 3) -> Any:
    return asyncio.run(deliver(cast(VirtualService, service or Service()), dataverse, outbox, errors,
                               max_attempts=max_attempts))


def three() -> MemoryOutbox:
    outbox = MemoryOutbox()
    for n, group in enumerate(("G1", "G2", "G3")):
        outbox.put(TABLE, f"2026010{n}", "OnExternalUpdated", group)
    return outbox


def test_a_refused_row_goes_to_the_error_log_and_the_later_rows_are_told() -> None:
    outbox, errors = three(), MemoryErrorLog()
    dataverse = ScriptedDataverse({"G1": refused()})
    poison = dict(outbox.rows[(TABLE, "20260100")])
    [told] = run(outbox, dataverse, errors)
    assert dataverse.told == [("OnExternalUpdated", "G2"), ("OnExternalUpdated", "G3")]
    assert outbox.rows == {} and told.updated == 2 and "set aside" in (told.problem or "")
    [entry] = errors.entries.values()
    assert entry.id == error_id(poison) == f"vtevents:{TABLE}|20260100"
    assert (entry.operation, entry.source, entry.category, entry.attempts, entry.status) == (
        VT_NOTIFY, "fno", "application", 1, "open")
    assert (entry.map, entry.target_status, entry.target_code) == (f"vt:{TABLE}", 400, "0x80040203")
    # the full text: the table, the row's key and outbox row key, Dataverse's whole answer
    assert TABLE in entry.text and "20260100" in entry.text and REFUSAL in entry.text
    assert json.loads(entry.key) == {"dataAreaId": "usmf", "CustomerGroupId": "G1"}
    # its change is the outbox row: resubmitting puts it back as it was, told at the next run
    back = json.loads(entry.change)
    asyncio.run(outbox.restore(back))
    assert outbox.rows == {(TABLE, "20260100"): {**{k: poison[k] for k in back}, "Attempts": 0}}
    dataverse.failing = {}
    run(outbox, dataverse, errors)
    assert dataverse.told[-1] == ("OnExternalUpdated", "G1") and outbox.rows == {}


@pytest.mark.parametrize("error", [
    TransientError("503 Service Unavailable", status=503),
    ThrottledError("429 Too Many Requests", status=429, retry_after=5),
    TimeoutError("read timed out"),
    SourceError(502, "F&O failed reading CustomerGroups"),
])
def test_a_transient_failure_keeps_the_order_then_goes_to_the_error_log_after_max_attempts(error: Exception) -> None:
    outbox, errors = three(), MemoryErrorLog()
    dataverse = ScriptedDataverse({"G1": error})
    for attempt in (1, 2):  # max_attempts=3: kept twice, nothing later goes before it
        [told] = run(outbox, dataverse, errors)
        assert dataverse.told == [] and errors.entries == {}
        assert outbox.rows[(TABLE, "20260100")]["Attempts"] == attempt
        assert "kept, retried" in (told.problem or "") and len(outbox.rows) == 3
    run(outbox, dataverse, errors)
    assert dataverse.told == [("OnExternalUpdated", "G2"), ("OnExternalUpdated", "G3")] and outbox.rows == {}
    [entry] = errors.entries.values()
    assert entry.attempts == 3 and "failed 3 runs" in entry.text and str(error) in entry.text


def test_refused_access_sets_nothing_aside_and_counts_no_attempt() -> None:
    """A 401/403 is the engine's credentials, not the row: every row would fail alike, so the table waits in order
    (however many runs) and tells everything once access is mended."""
    outbox, errors = three(), MemoryErrorLog()
    dataverse = ScriptedDataverse({"G1": AuthFailed("403 Forbidden: no privilege", status=403)})
    for _ in range(5):  # beyond max_attempts=3
        [told] = run(outbox, dataverse, errors)
        assert "refused the engine's access" in (told.problem or "")
    assert dataverse.told == [] and errors.entries == {} and len(outbox.rows) == 3
    assert not outbox.rows[(TABLE, "20260100")].get("Attempts")
    dataverse.failing = {}
    run(outbox, dataverse, errors)
    assert [g for _, g in dataverse.told] == ["G1", "G2", "G3"] and outbox.rows == {}


def test_a_transient_failure_that_passes_is_told_in_order() -> None:
    outbox, errors = three(), MemoryErrorLog()
    dataverse = ScriptedDataverse({"G1": TransientError("502 Bad Gateway", status=502)}, times=1)
    run(outbox, dataverse, errors)
    assert dataverse.told == [] and outbox.rows[(TABLE, "20260100")]["LastError"]
    run(outbox, dataverse, errors)
    assert [g for _, g in dataverse.told] == ["G1", "G2", "G3"] and errors.entries == {}


def test_the_source_error_is_classified_by_the_connector_error_behind_it() -> None:
    """The F&O source wraps the connector's error in a SourceError: a 400 from F&O is a refusal, a 503 transient."""
    for cause, set_aside in ((ValidationFailed("bad filter", status=400), True),
                             (TransientError("unavailable", status=503), False)):
        try:
            raise SourceError(502, f"F&O failed reading CustomerGroups: {cause}") from cause
        except SourceError as wrapped:
            error = wrapped
        outbox, errors = three(), MemoryErrorLog()
        run(outbox, ScriptedDataverse(), errors, service=Service(NoRows(error)))
        assert bool(errors.entries) is set_aside and len(outbox.rows) == (0 if set_aside else 3)
        if set_aside:
            assert {e.target_status for e in errors.entries.values()} == {400}


def test_a_table_dataverse_does_not_have_drops_its_rows_with_a_problem_and_no_error_entries() -> None:
    """Nothing in Dataverse to tell nor listening: the rows go (the outbox must not grow, the error log must not fill
    with one entry per row after max_attempts runs); once registered, the table's next events are told."""

    class Unregistered(ScriptedDataverse):
        registered = False

        async def table_of(self, entity_set: str) -> DataverseTable | None:
            return await super().table_of(entity_set) if self.registered else None

    outbox, errors, dataverse = three(), MemoryErrorLog(), Unregistered()
    [told] = run(outbox, dataverse, errors)
    assert outbox.rows == {} and errors.entries == {} and dataverse.told == []
    assert "3 F&O event notification(s) dropped" in (told.problem or "")
    dataverse.registered = True
    outbox.put(TABLE, "20260109", "OnExternalUpdated", "G9")
    [told] = run(outbox, dataverse, errors)
    assert dataverse.told == [("OnExternalUpdated", "G9")] and told.problem is None and outbox.rows == {}


def test_a_row_that_cannot_be_read_is_set_aside_at_once() -> None:
    outbox, errors = three(), MemoryErrorLog()
    outbox.rows[(TABLE, "20260100")]["Key"] = "{not json"
    run(outbox, ScriptedDataverse(), errors, max_attempts=10)
    assert list(errors.entries) == [f"vtevents:{TABLE}|20260100"] and outbox.rows == {}


def test_only_an_outbox_row_can_be_resubmitted() -> None:
    with pytest.raises(ValueError, match="lacks Action"):
        asyncio.run(restore(cast(Any, None), json.dumps({"PartitionKey": TABLE, "RowKey": "x"})))
    with pytest.raises(ValueError, match="not an outbox row"):
        asyncio.run(restore(cast(Any, None), "{"))

