"""The sweep's pure parts: checkpoints, the System Job query, a job or an F&O row as a change event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from core.maps import MapSet
from core.sync.domain import Link
from core.sync.sweep import (
    MAX_SEEN,
    Checkpoint,
    Sweep,
    advanced,
    delta_change,
    fno_change,
    job_change,
    job_filter,
    odata_time,
)
from tests.unit.sync.fakes import MemoryCheckpoints

MAPS = MapSet.load(["maps"])
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STEP = "5f1c2a4e-0000-4000-8000-000000000001"
ROW = "0a1b2c3d-0000-4000-8000-0000000000aa"
JOB = "9e8d7c6b-0000-4000-8000-0000000000bb"


def context(**extra: object) -> str:
    return json.dumps({
        "MessageName": "Update", "PrimaryEntityName": "account", "PrimaryEntityId": ROW, "OperationId": JOB,
        "OperationCreatedOn": "/Date(1767323045000)/", "Mode": 1,
        "InputParameters": [{"key": "Target", "value": {
            "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "LogicalName": "account", "Id": ROW,
            "Attributes": [{"key": "accountid", "value": ROW}, {"key": "telephone1", "value": "555"}]}}],
        "PreEntityImages": [], "PostEntityImages": [], **extra})


def test_the_job_query_is_the_reference_query_with_a_time() -> None:
    text = job_filter([STEP, STEP], T0)
    assert text == f"statuscode eq 31 and (_owningextensionid_value eq {STEP}) and completedon ge 2026-01-02T03:04:05Z"
    assert odata_time(T0.replace(microsecond=999_999)) == "2026-01-02T03:04:05Z"


def test_a_failed_job_is_replayed_with_the_webhook_event_id() -> None:
    found = job_change({"asyncoperationid": JOB, "data": context(), "completedon": "2026-01-02T03:04:06Z",
                        "messagename": "Update", "primaryentitytype": "account", "_regardingobjectid_value": ROW})
    assert found.problem is None and found.event is not None
    assert found.event.event_id == f"dv:{JOB}"  # the one the delivery would have had: the broker drops a twin
    assert (found.event.operation, found.event.record_id, found.event.values["telephone1"]) == ("update", ROW, "555")
    assert found.at == T0 + timedelta(seconds=1) and "replayed" in found.how


def test_a_job_without_a_readable_body_reads_its_row_again_or_deletes() -> None:
    base = {"asyncoperationid": JOB, "completedon": "2026-01-02T03:04:06Z", "createdon": "2026-01-02T03:04:05Z",
            "primaryentitytype": "account", "_regardingobjectid_value": ROW.upper()}
    update = job_change({**base, "messagename": "Update", "data": "<xml/>"})
    assert update.event is not None and update.event.operation == "refetch" and update.event.record_id == ROW
    assert update.event.occurred_at == T0 and "not a webhook body" in update.how
    delete = job_change({**base, "messagename": "Delete", "data": None})
    assert delete.event is not None and delete.event.operation == "delete"
    nothing = job_change({**base, "messagename": "Associate", "data": None})
    assert nothing.event is None and nothing.problem


def test_a_changed_fno_row_is_a_keyed_change_stable_per_version() -> None:
    customers = MAPS["customers"]
    row = {"dataAreaId": "usmf", "CustomerAccount": "US-001", "ModifiedDateTime": "2026-01-02T03:04:05Z"}
    found = fno_change(customers, row)
    assert found.event is not None and found.event.keys == {"CustomerAccount": "US-001", "dataAreaId": "usmf"}
    assert (found.event.company, found.event.operation, found.at) == ("USMF", "refetch", T0)
    assert fno_change(customers, dict(row)).event.event_id == found.event.event_id  # type: ignore[union-attr]
    later = fno_change(customers, {**row, "ModifiedDateTime": "2026-01-02T03:04:09Z"})
    assert later.source_id == found.source_id and later.event.event_id != found.event.event_id  # type: ignore[union-attr]
    assert fno_change(customers, {**row, "CustomerAccount": ""}).problem


def test_the_checkpoint_moves_to_the_newest_time_and_keeps_the_overlap() -> None:
    start = Checkpoint(since=T0)
    moved = advanced(start, [("a", T0 + timedelta(seconds=5)), ("b", T0 + timedelta(seconds=100))],
                     timedelta(seconds=60))
    assert moved.since == T0 + timedelta(seconds=100) and set(moved.seen) == {"b"}  # a is older than the overlap
    assert advanced(moved, [], timedelta(seconds=60)) == moved
    many = advanced(start, [(str(i), T0 + timedelta(milliseconds=i)) for i in range(MAX_SEEN + 50)],
                    timedelta(seconds=60))
    assert len(many.seen) == MAX_SEEN and str(MAX_SEEN + 49) in many.seen  # the newest are kept


def test_an_id_the_next_sweep_reads_again_is_kept_even_within_the_second() -> None:
    """The next sweep reads from `since - overlap` cut to the second (the sources keep whole seconds): an id of that
    second is kept, or it would be sent again."""
    moved = advanced(Checkpoint(since=T0 + timedelta(milliseconds=700)), [("a", T0)], timedelta(0))
    assert moved.since == T0 + timedelta(milliseconds=700) and set(moved.seen) == {"a"}


def test_a_swept_change_is_a_re_read_naming_who_changed_the_row_last() -> None:
    """A row the engine wrote last names the engine as its initiating user (F&O's ModifiedBy; Dataverse's modifiedby
    through the engine's systemuser): apply then sends only what moved in it since the engine last knew it."""
    row = {"dataAreaId": "usmf", "CustomerAccount": "US-001", "ModifiedDateTime": "2026-01-02T03:04:05Z",
           "ModifiedBy": "7f1c0000-0000-4000-8000-000000000e01"}
    found = fno_change(MAPS["customers"], row)
    assert found.event is not None
    assert (found.event.operation, found.event.initiated_by) == ("refetch", row["ModifiedBy"])
    engine, user = "7f1c0000-0000-4000-8000-000000000e01", "11110000-0000-4000-8000-000000000001"
    entry = {"accountid": ROW, "@odata.etag": 'W/"4711"', "_modifiedby_value": user.upper()}
    ours = delta_change("account", "accountid", entry, T0, {user: engine})
    assert ours.event is not None and (ours.event.operation, ours.event.version) == ("refetch", "4711")
    assert ours.event.initiated_by == engine
    theirs = delta_change("account", "accountid", entry, T0, {})
    assert theirs.event is not None and theirs.event.initiated_by == user
    gone = delta_change("account", "accountid", {"@odata.context": "x/$metadata#accounts/$deletedEntity",
                                                 "id": ROW, "reason": "deleted"}, T0)
    assert gone.event is not None and (gone.event.operation, gone.event.record_id) == ("delete", ROW)


class _Sent:
    def __init__(self) -> None:
        self.changes: list[Any] = []
        self.entries: list[Any] = []

    async def send(self, changes: list[Any]) -> None:
        self.changes += changes

    async def record(self, entries: list[Any]) -> None:
        self.entries += entries


class _Fno:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def query(self, entity_set: str, **options: Any) -> list[dict[str, Any]]:
        return self.rows if entity_set == "CustomersV3" else []


async def test_rows_the_engine_wrote_last_are_sent_too_and_the_checkpoint_moves() -> None:
    rows = [
        {
            "dataAreaId": "usmf",
            "CustomerAccount": "US-001",
            "ModifiedDateTime": "2026-01-02T03:04:05Z",
            "ModifiedBy": "7F1C0000-0000-4000-8000-000000000E01",
        },
        {
            "dataAreaId": "usmf",
            "CustomerAccount": "US-002",
            "ModifiedDateTime": "2026-01-02T03:04:09Z",
            "ModifiedBy": "Admin",
        },
    ]
    memory, sent = MemoryCheckpoints(), _Sent()

    async def no_steps() -> list[str]:
        return []

    sweep = Sweep(
        MAPS,
        memory,
        sent,
        sent,
        dataverse=_Fno([]),
        fno=_Fno(rows),
        step_ids=no_steps,
        overlap=timedelta(seconds=10),
        clock=lambda: T0 - timedelta(minutes=1),
    )
    await sweep.run()  # checkpoints set
    report = await sweep.run()
    assert report.found["fno|CustomersV3"] == 2 and report.queued == len(sent.changes) == 2
    assert {c.event.keys["CustomerAccount"] for c in sent.changes} == {"US-001", "US-002"}
    assert {e.reason for e in sent.entries} == {
        "sweep: changed in F&O at 2026-01-02T03:04:05Z (ModifiedDateTime)",
        "sweep: changed in F&O at 2026-01-02T03:04:09Z (ModifiedDateTime)",
    }
    assert memory.rows["fno|CustomersV3"].since == T0 + timedelta(seconds=4)
    again = await sweep.run()
    assert again.queued == 0


class _Links:
    """Links that noted an F&O change at a time (`fno_at`), and were last saved at another (`updated_at`)."""

    def __init__(self, noted: dict[tuple[str, ...], tuple[datetime, datetime]]) -> None:
        self.noted = noted

    async def find(self, map: str, side: str, record_id: str) -> Any:
        return None

    async def get(self, map: str, key: tuple[str, ...]) -> Any:
        if key not in self.noted:
            return None
        fno_at, updated_at = self.noted[key]
        return Link(map=map, key=key, versions={"fno_at": fno_at.isoformat()}, updated_at=updated_at)


async def test_a_row_whose_change_was_applied_live_is_not_sent_again_but_one_the_engine_wrote_since_is() -> None:
    rows = [
        {
            "dataAreaId": "usmf",
            "CustomerAccount": account,
            "ModifiedDateTime": "2026-01-02T03:04:05Z",
            "ModifiedBy": "Admin",
        }
        for account in ("US-001", "US-002", "US-003", "US-004")
    ]
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    links = _Links(
        {
            # the live event of this row version was applied (its time has the milliseconds ModifiedDateTime lacks)
            ("USMF", "US-001"): (at + timedelta(milliseconds=400), at + timedelta(seconds=2)),
            ("USMF", "US-004"): (at, at + timedelta(seconds=1)),
            # the engine wrote the row last (a Dataverse change) long after the last F&O change it saw: the row may hold
            # a user's change whose event never came, whenever the link was saved
            ("USMF", "US-002"): (at - timedelta(minutes=1), at + timedelta(seconds=30)),
        }
    )  # US-003: never linked
    memory, sent = MemoryCheckpoints(), _Sent()

    async def no_steps() -> list[str]:
        return []

    sweep = Sweep(MAPS, memory, sent, sent, dataverse=_Fno([]), fno=_Fno(rows), step_ids=no_steps, links=links,
                  overlap=timedelta(seconds=10), clock=lambda: T0 - timedelta(minutes=1))
    await sweep.run()
    report = await sweep.run()
    assert report.found["fno|CustomersV3"] == 4
    assert sorted(c.event.keys["CustomerAccount"] for c in sent.changes) == ["US-002", "US-003"]
