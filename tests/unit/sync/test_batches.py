"""Batches of one session's changes (core.sync.worker over core.sync.batch): coalescing per record,
order per record, failures isolated per record, records held behind their retries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from core.connectors.errors import TransientError, ValidationFailed
from core.events.model import ChangeEvent
from core.sync.batch import coalesce
from core.sync.worker import CATCH_UP, ORIGIN, Delivery
from tests.unit.sync.test_worker import Harness
from tests.unit.sync.world import ENGINE_USER, T0, World, customer

SESSION = "customers|b1"


def keys(account: str) -> dict[str, str]:
    return {"dataAreaId": "usmf", "CustomerAccount": account}


def deliveries(events: list[ChangeEvent]) -> list[Delivery]:
    return [Delivery(body=e.to_json().encode(), message_id=f"m{n}", session_id=SESSION, delivery_count=1)
            for n, e in enumerate(events, start=1)]


@pytest.fixture
def harness(world: World) -> Harness:
    return Harness(world)


def _counted(message_id: str) -> str:
    """A requeued change's id without the hash of the message it was sent on from."""
    return message_id.rsplit(".", 1)[0]


def account_writes(world: World) -> list[str]:
    return [c.method for c in world.dv.writes() if c.entity_set == "accounts"]


# -- coalescing (pure) ----------------------------------------------------------------------------
def test_a_run_of_updates_becomes_its_last_change(world: World) -> None:
    events = [world.fno_event("customers", keys("US-001")) for _ in range(3)]
    [step] = coalesce(["a", "b", "c"], events)
    assert (step.item, step.absorbed, step.event) == ("c", ["a", "b"], events[2])


def test_create_then_update_is_one_change_carrying_both(world: World) -> None:
    create = world.fno_event("customers", keys("US-001"), "create")
    update = world.fno_event("customers", keys("US-001"))
    [step] = coalesce([1, 2], [create, update])
    assert step.item == 2 and step.absorbed == [1]


def test_deletes_keep_their_meaning(world: World) -> None:
    update, delete, create = (world.fno_event("customers", keys("US-001"), op) for op in ("update", "delete", "create"))
    steps = coalesce([1, 2, 3], [update, delete, create])
    assert [(s.item, s.event.operation, s.absorbed) for s in steps] == [
        (1, "update", []), (2, "delete", []), (3, "create", [])]
    # update + delete: the delete is applied after the update, neither is lost
    assert [s.item for s in coalesce([1, 2], [update, delete])] == [1, 2]


def test_the_two_sides_changes_and_two_companies_records_never_merge(world: World) -> None:
    fno = world.fno_event("customers", keys("US-001"))
    dv = world.dv_event("customers", "1f0c5c4e-0000-4000-8000-000000000001")
    other_company = world.fno_event("customers", {"dataAreaId": "demf", "CustomerAccount": "US-001"})
    assert len(coalesce([1, 2, 3], [fno, dv, fno])) == 3
    assert len(coalesce([1, 2], [fno, other_company])) == 2


def test_a_dataverse_run_ending_with_an_older_change_is_applied_as_a_read_of_the_row(world: World) -> None:
    """Replayed newest first: the create and its updates in one batch, the create last. Its image is the oldest;
    kept as it is, it would write the create's values and stand for the newer changes it absorbed."""
    row = "1f0c5c4e-0000-4000-8000-000000000001"
    update2 = world.dv_event("customers", row, values={"telephone1": "+1 555 3002"}, version="1003")
    update1 = world.dv_event("customers", row, values={"telephone1": "+1 555 3001"}, version="1002")
    create = world.dv_event("customers", row, "create", values={"telephone1": "+1 555 3000"}, version="1001")
    [step] = coalesce([1, 2, 3], [update2, update1, create])
    assert step.item == 3 and step.absorbed == [1, 2]
    assert (step.event.operation, step.event.version, step.event.partial) == ("refetch", "1003", True)
    # a lower RowVersion delivered last, and no version at all after a create: read as well
    [step] = coalesce([1, 2], [update2, update1])
    assert (step.event.operation, step.event.version) == ("refetch", "1003")
    [step] = coalesce(
        [1, 2], [create.model_copy(update={"version": None}), update1.model_copy(update={"version": None})]
    )
    assert step.event.operation == "update"  # in order as far as anyone can tell: the last image is the newest
    # in order: the last change's image is the newest, used as it is
    [step] = coalesce([1, 2, 3], [create, update1, update2])
    assert step.event == update2


def test_a_run_with_a_users_change_is_not_an_echo_even_if_it_ends_with_ours(world: World) -> None:
    row = "1f0c5c4e-0000-4000-8000-000000000001"
    user = world.dv_event("customers", row, initiated_by="7d3c0000-0000-4000-8000-00000000user")
    ours = world.dv_event("customers", row, initiated_by=ENGINE_USER)
    [step] = coalesce([1, 2], [user, ours], engine_user=ENGINE_USER)
    assert step.item == 2 and step.event.initiated_by == user.initiated_by
    [step] = coalesce([1, 2], [ours, ours.model_copy(update={"event_id": "x"})], engine_user=ENGINE_USER)
    assert step.event.initiated_by == ENGINE_USER


# -- batches through the worker ---------------------------------------------------------------------
async def test_updates_of_one_record_in_a_batch_write_once_with_the_net_change(world: World,
                                                                              harness: Harness) -> None:
    await world.linked_customer()
    record = world.fo.record("CustomersV3", **keys("US-001"))
    events = []
    for name in ("First", "Second", "Third"):
        record["OrganizationName"] = name  # each event re-reads the record: the last one sees "Third"
        events.append(world.fno_event("customers", keys("US-001")))
    handled = await harness.worker.handle_batch(deliveries(events))
    assert handled == {"m1": "skipped", "m2": "skipped", "m3": "applied"}
    assert world.account_row()["name"] == "Third"
    assert len(world.dv.writes()) == 1
    reasons = [e.reason for e in harness.activity.entries if e.outcome == "skipped"]
    assert reasons == ["coalesced: a later change of this record in the same batch (m3) carries it"] * 2


async def test_a_linked_records_coalesced_dataverse_changes_are_logged_under_its_key(world: World,
                                                                                    harness: Harness) -> None:
    """Filtering the activity log by a record's key shows every change of it, not only the applied ones: a
    Dataverse change carries only its row id, so the worker names it by the record's link."""
    row = await world.linked_customer()
    world.dv.tables["accounts"][row]["name"] = "Renamed"
    events = [world.dv_event("customers", row), world.dv_event("customers", row)]
    handled = await harness.worker.handle_batch(deliveries(events))
    assert handled == {"m1": "skipped", "m2": "applied"}
    assert [(e.outcome, e.key) for e in harness.activity.entries] == [("skipped", "USMF|US-001"),
                                                                      ("applied", "USMF|US-001")]
    # with no change of the record applied in the batch, the link names it: F&O down, the change retries
    world.dv.tables["accounts"][row]["name"] = "Renamed again"

    async def down(entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], **kw: Any) -> Any:
        raise TransientError("Service Unavailable", status=503, method="PATCH", url="CustomersV3")

    world.fo.update = down  # type: ignore[method-assign]
    find, finds = world.links.find, []

    async def counted_find(*args: Any) -> Any:
        finds.append(args)
        return await find(*args)

    world.links.find = counted_find  # type: ignore[method-assign]
    assert await harness.worker.handle_batch(deliveries([world.dv_event("customers", row)])) == {"m1": "retrying"}
    assert [(e.outcome, e.key) for e in harness.activity.entries[2:]] == [("retrying", "USMF|US-001")]
    assert len(finds) == 2  # the lane's and the apply's: the lane's lookup names the record, no third read
    world.links.find = find  # type: ignore[method-assign]
    del harness.activity.entries[2:]
    # a row not linked yet keeps its row id: nothing else names it
    await harness.worker.handle_batch(deliveries([world.dv_event("customers", "0000-unlinked"),
                                                  world.dv_event("customers", "0000-unlinked")]))
    assert {e.key for e in harness.activity.entries[2:]} == {"dataverse:0000-unlinked"}


async def test_create_update_delete_create_in_one_batch_ends_as_the_last_create(world: World,
                                                                                harness: Harness) -> None:
    world.fo.add("CustomersV3", customer("US-002", OrganizationName="Again"))
    ops = ["create", "update", "delete", "create"]
    events = [world.fno_event("customers", keys("US-002"), op) for op in ops]
    handled = await harness.worker.handle_batch(deliveries(events))
    assert handled == {"m1": "skipped", "m2": "applied", "m3": "applied", "m4": "applied"}
    assert world.account_row("US-002")["name"] == "Again"
    assert account_writes(world) == ["upsert", "delete", "upsert"]


async def test_order_per_record_holds_across_interleaved_records_and_batches(world: World,
                                                                            harness: Harness) -> None:
    accounts = [f"US-{n:03d}" for n in range(1, 6)]
    for account in accounts:
        world.fo.add("CustomersV3", customer(account))
    # Dataverse renames interleaved across records, two batches; each record's last rename must win.
    rows: dict[str, str] = {}
    for account in accounts:
        await harness.worker.handle_batch(deliveries([world.fno_event("customers", keys(account), "create")]))
        rows[account] = world.account_row(account)["accountid"]
    for batch in range(2):
        events = []
        for step in range(3):
            for account in accounts:
                name = f"{account} rename {batch}.{step}"
                values = {"name": name, "accountnumber": account, "msdyn_company": world.company_ref()}
                world.dv.tables["accounts"][rows[account]]["name"] = name
                events.append(world.dv_event("customers", rows[account], values=values,
                                             version=str(1000 * batch + 10 * step + accounts.index(account) + 1)))
        await harness.worker.handle_batch(deliveries(events))
    for account in accounts:
        assert world.fo.record("CustomersV3", **keys(account))["OrganizationName"] == f"{account} rename 1.2"
    assert harness.errors.entries == []


async def test_one_bad_record_in_a_batch_of_100_fails_alone(world: World, harness: Harness) -> None:
    accounts = [f"C-{n:03d}" for n in range(100)]
    for account in accounts:
        world.fo.add("CustomersV3", customer(account))
    refuse = "C-042"
    upsert = world.dv.upsert

    async def picky_upsert(entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], **kw: Any) -> Any:
        if key.get("accountnumber") == refuse:
            raise ValidationFailed("A validation error occurred: credit limit out of range", status=400,
                                   code="0x80044331", method="PATCH", url=f"accounts(accountnumber='{refuse}')")
        return await upsert(entity_set, key, body, **kw)

    world.dv.upsert = picky_upsert  # type: ignore[method-assign]
    handled = await harness.worker.handle_batch(deliveries([world.fno_event("customers", keys(a)) for a in accounts]))
    assert sum(1 for outcome in handled.values() if outcome == "applied") == 99
    assert handled["m43"] == "failed"
    [error] = harness.errors.entries
    assert (error.key, error.category, error.id) == ("USMF|C-042", "application", "m43")
    assert world.account(refuse) is None and all(world.account(a) for a in accounts if a != refuse)
    assert harness.queue.sent == []


async def test_a_transient_failure_delays_only_its_record_and_its_later_changes_wait_behind_it(
        world: World, harness: Harness) -> None:
    for account in ("US-001", "US-002"):
        world.fo.add("CustomersV3", customer(account))
    upsert = world.dv.upsert
    down = {"US-001"}

    async def flaky_upsert(entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], **kw: Any) -> Any:
        if key.get("accountnumber") in down:
            raise TransientError("Service Unavailable", status=503, method="PATCH", url="accounts")
        return await upsert(entity_set, key, body, **kw)

    world.dv.upsert = flaky_upsert  # type: ignore[method-assign]
    first = [world.fno_event("customers", keys("US-001"), "create"), world.fno_event("customers", keys("US-002")),
             world.fno_event("customers", keys("US-001"), "delete")]
    handled = await harness.worker.handle_batch(deliveries(first))
    assert handled == {"m1": "retrying", "m2": "applied", "m3": "retrying"}  # the delete waits behind the create
    assert world.account("US-002") is not None
    retry, waiting = harness.queue.sent
    assert (_counted(retry.message_id), _counted(waiting.message_id)) == ("m1|retry-1", "m3|wait-1-1")
    assert retry.scheduled_at is not None and waiting.scheduled_at is not None
    assert waiting.scheduled_at > retry.scheduled_at  # due after it: order holds
    # a later batch brings another change of the held record before its retry is due: it queues behind too
    world.fo.record("CustomersV3", **keys("US-001"))["OrganizationName"] = "Later"
    later = Delivery(body=world.fno_event("customers", keys("US-001")).to_json().encode(), message_id="m4",
                     session_id=SESSION, delivery_count=1)
    assert await harness.worker.handle_batch([later]) == {"m4": "retrying"}
    assert world.account("US-001") is None
    # the target is back: the retry and everything behind it are applied, in order
    down.clear()
    world.dv.calls.clear()
    again = harness.due()
    assert [_counted(d.message_id) for d in again] == ["m1|retry-1", "m3|wait-1-1", "m4|wait-1-1"]
    handled = await harness.worker.handle_batch(again)
    assert list(handled.values()) == ["applied", "applied", "applied"]
    # create, delete, then the later update (F&O re-read: the record is still there) creates it again
    assert account_writes(world) == ["upsert", "delete", "upsert"]
    assert harness.holds.rows == {} and harness.errors.entries == []


async def test_a_hold_whose_retry_never_comes_is_released(world: World, harness: Harness) -> None:
    from core.store.holds import Hold

    world.fo.add("CustomersV3", customer())
    lane = "customers|US-001"
    await harness.holds.hold(SESSION, Hold(lane, "lost-message", T0))  # due long ago, never delivered
    handled = await harness.worker.handle_batch(deliveries([world.fno_event("customers", keys("US-001"))]))
    assert handled == {"m1": "applied"} and harness.holds.rows == {}
    # a hold still due in the future makes the change wait
    from datetime import UTC, datetime
    await harness.holds.hold(SESSION, Hold(lane, "m-retry", datetime.now(UTC) + timedelta(seconds=30)))
    handled = await harness.worker.handle_batch(deliveries([world.fno_event("customers", keys("US-001"))]))
    assert handled == {"m1": "retrying"}


async def test_a_change_sent_again_after_a_catch_up_never_reuses_an_id_the_queue_has_seen(
        world: World, harness: Harness) -> None:
    """The changes queue drops a message id it saw in the last 10 minutes, without a word to the sender. A change
    retried during an outage, parked, then sent by the catch-up (its counters start afresh) and failing once more
    must not go out as the `retry-1` or `wait-1-1` it already used: that copy would vanish, and the change with it."""
    world.fo.add("CustomersV3", customer("US-001"))

    async def down(entity_set: str, key: Mapping[str, Any], body: Mapping[str, Any], **kw: Any) -> Any:
        raise TransientError("Service Unavailable", status=503, method="PATCH", url="accounts")

    world.dv.upsert = down  # type: ignore[method-assign]
    events = [world.fno_event("customers", keys("US-001"), "create"),
              world.fno_event("customers", keys("US-001"), "delete")]  # not coalesced: both go out
    await harness.worker.handle_batch(deliveries(events))
    seen = [c.message_id for c in harness.queue.sent]
    assert [_counted(m) for m in seen] == ["m1|retry-1", "m2|wait-1-1"]
    # the map paused and parked them (its record released); the catch-up sends them under ids of its own
    harness.queue.sent.clear()
    harness.holds.rows.clear()
    caught_up = [Delivery(body=event.to_json().encode(), message_id=f"m{n}|catch-up-0123456789", session_id=SESSION,
                          delivery_count=1, properties={ORIGIN: f"m{n}", CATCH_UP: "1"})
                 for n, event in enumerate(events, start=1)]
    assert list((await harness.worker.handle_batch(caught_up)).values()) == ["retrying", "retrying"]
    again = [c.message_id for c in harness.queue.sent]
    assert [_counted(m) for m in again] == ["m1|retry-1", "m2|wait-1-1"]
    assert set(seen).isdisjoint(again), (seen, again)
