"""The worker (core.sync.worker): what a delivery's outcome becomes (activity, retry, error log)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from core.connectors.errors import AuthFailed, ConflictError, ThrottledError, TransientError, ValidationFailed
from core.maps import MapValueError
from core.store.holds import Hold
from core.store.links import LinkTooLarge
from core.store.queues import QueuedChange
from core.sync.catchup import MapModes
from core.sync.errors import LookupPending, category_of, is_transient
from core.sync.worker import ATTEMPTS, FIRST_FAILED, ORIGIN, Delivery, Handled, Worker, backoff_seconds
from tests.unit.sync.fakes import MemoryActivity, MemoryErrors, MemoryModes, MemoryParked, MemorySends
from tests.unit.sync.world import ENGINE_USER, World, customer, vendor

USMF_001 = {"dataAreaId": "usmf", "CustomerAccount": "US-001"}


class MemoryQueue:
    """Where the worker sends changes on (retries and changes waiting behind them)."""

    def __init__(self) -> None:
        self.sent: list[QueuedChange] = []

    async def send(self, changes: list[QueuedChange]) -> None:
        self.sent.extend(changes)


class MemoryHolds:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Hold] = {}

    async def holds(self, session_id: str) -> dict[str, Hold]:
        return {lane: hold for (session, lane), hold in self.rows.items() if session == session_id}

    async def hold(self, session_id: str, hold: Hold) -> None:
        self.rows[(session_id, hold.lane)] = hold

    async def release(self, session_id: str, lane: str) -> None:
        self.rows.pop((session_id, lane), None)


class Harness:
    def __init__(self, world: World, max_attempts: int = 3) -> None:
        self.activity = MemoryActivity()
        self.errors = MemoryErrors()
        self.queue = MemoryQueue()
        self.holds = MemoryHolds()
        self.worker = Worker(world.applier, self.activity, self.errors, requeue=self.queue, holds=self.holds,
                             links=world.links, max_attempts=max_attempts, backoff_base=0.5, backoff_cap=300,
                             engine_user=ENGINE_USER)

    def due(self) -> list[Delivery]:
        """What the broker delivers next: the changes sent on, in the order sent (scheduled times ignored)."""
        sent, self.queue.sent = self.queue.sent, []
        return [Delivery(body=c.event.to_json().encode(), message_id=c.message_id, session_id=c.session_id,
                         delivery_count=1, properties=c.properties) for c in sent]

    async def redeliver(self) -> Handled:
        [again] = self.due()
        return await self.worker.handle(again)


@pytest.fixture
def harness(world: World) -> Harness:
    return Harness(world)


def delivery(body: str | bytes, attempt: int = 1, message_id: str = "msg-1") -> Delivery:
    data = body.encode() if isinstance(body, str) else body
    return Delivery(body=data, message_id=message_id, session_id="customers|b1", delivery_count=attempt)


async def test_applied_change_is_recorded_with_its_latency(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    event = world.fno_event("customers", USMF_001)
    event = event.model_copy(update={"occurred_at": event.occurred_at - timedelta(minutes=2)})
    assert await harness.worker.handle(delivery(event.to_json())) == "applied"
    [entry] = harness.activity.entries
    assert (entry.outcome, entry.map, entry.key, entry.source) == ("applied", "customers", "USMF|US-001", "fno")
    assert entry.event_id == event.event_id and entry.message_id == "msg-1"
    assert entry.target_id == world.account_row()["accountid"]
    assert entry.latency_ms is not None and entry.latency_ms >= 120_000  # the change is two minutes old
    assert harness.errors.entries == [] and harness.queue.sent == []


async def test_skipped_change_is_recorded_without_latency(world: World, harness: Harness) -> None:
    event = world.fno_event("customers", USMF_001)  # the record is not there: skipped
    assert await harness.worker.handle(delivery(event.to_json())) == "skipped"
    [entry] = harness.activity.entries
    assert entry.outcome == "skipped" and entry.latency_ms is None
    assert harness.errors.entries == []


async def test_transient_error_is_sent_again_in_its_session_after_a_backoff(world: World,
                                                                            harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    world.dv.failures.append(ThrottledError("Number of requests exceeded the limit", retry_after=5, status=429,
                                            method="PATCH", url="accounts"))
    event = world.fno_event("customers", USMF_001)
    before = datetime.now(UTC)
    assert await harness.worker.handle(delivery(event.to_json(), attempt=1)) == "retrying"
    [entry] = harness.activity.entries
    assert entry.outcome == "retrying" and entry.reason.startswith("throttled:")
    assert harness.errors.entries == []
    [again] = harness.queue.sent
    counted = again.message_id.rsplit(".", 1)[0]  # then the hash of the message it was sent on from
    assert (again.session_id, counted, again.event) == ("customers|b1", "msg-1|retry-1", event)
    assert again.properties[ORIGIN] == "msg-1" and again.properties[ATTEMPTS] == "1"
    assert again.scheduled_at is not None and again.scheduled_at >= before + timedelta(seconds=0.5)
    assert datetime.fromisoformat(again.properties[FIRST_FAILED]) >= before
    [(session, _)] = harness.holds.rows  # the record is held until the retry is applied
    assert session == "customers|b1"
    assert await harness.redeliver() == "applied"
    assert harness.holds.rows == {} and harness.activity.entries[-1].message_id == "msg-1"


async def test_lookup_pending_is_retried_then_logged_on_the_last_attempt(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer(CustomerGroupId="99"))  # group 99 never reaches Dataverse
    body = world.fno_event("customers", USMF_001).to_json()
    assert await harness.worker.handle(delivery(body)) == "retrying"
    assert await harness.redeliver() == "retrying"
    waits = [c.scheduled_at for c in harness.queue.sent]
    assert await harness.redeliver() == "failed"
    assert [e.outcome for e in harness.activity.entries] == ["retrying", "retrying", "failed"]
    [error] = harness.errors.entries
    assert (error.id, error.map, error.key, error.category) == ("msg-1", "customers", "USMF|US-001", "lookup_pending")
    assert error.attempts == 3 and error.session_id == "customers|b1"
    assert json.loads(error.change)["keys"] == USMF_001
    assert error.text.startswith("LookupPending:") and "msdyn_customergroupid" in error.text
    assert error.status == "open" and error.first_at.tzinfo is not None
    assert waits[0] is not None and waits[0] > datetime.now(UTC)  # the second retry waits longer (1 s)
    assert harness.holds.rows == {}  # given up: the record is no longer held


async def test_a_deleted_target_waits_for_its_delete_and_is_written_again_on_the_last_attempt(
        world: World, harness: Harness) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"].pop(row_id)  # deleted in Dataverse, and that delete never syncs
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Again"
    body = world.fno_event("customers", USMF_001).to_json()
    assert await harness.worker.handle(delivery(body)) == "retrying"
    assert world.account() is None
    assert await harness.redeliver() == "retrying"
    assert world.account() is None
    assert await harness.redeliver() == "applied"
    assert [(e.outcome, e.reason.split(":")[0]) for e in harness.activity.entries] == [
        ("retrying", "conflict"), ("retrying", "conflict"), ("applied", "created again")]
    assert world.account_row()["name"] == "Contoso Again" and harness.errors.entries == []


async def test_an_outage_is_retried_past_max_attempts_until_the_horizon(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    body = world.fno_event("customers", USMF_001).to_json()
    for _ in range(6):  # twice max_attempts: a target that is down is not the change's fault
        world.dv.failures.append(TransientError("Service Unavailable", status=503, method="PATCH", url="accounts"))
    assert await harness.worker.handle(delivery(body)) == "retrying"
    for _ in range(5):
        assert await harness.redeliver() == "retrying"
    caps = [backoff_seconds(n, 0.5, 300) for n in range(1, 12)]
    assert caps[-1] == 300 and caps[:3] == [0.5, 1.0, 2.0]
    assert await harness.redeliver() == "applied"
    assert harness.errors.entries == []
    # past the horizon it goes to the error log, with the whole retrying time behind it
    world.dv.failures.append(TransientError("Service Unavailable", status=503, method="PATCH", url="accounts"))
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Renamed"
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    late = Delivery(body=world.fno_event("customers", USMF_001).to_json().encode(), message_id="m-2|retry-40",
                    session_id="customers|b1", delivery_count=1,
                    properties={ORIGIN: "m-2", ATTEMPTS: "40", FIRST_FAILED: old})
    assert await harness.worker.handle(late) == "failed"
    [error] = harness.errors.entries
    assert (error.id, error.category, error.attempts) == ("m-2", "system", 41)
    assert error.first_at == datetime.fromisoformat(old)


async def test_permanent_error_goes_to_the_error_log_at_once(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    answer = '{"error":{"code":"0x80044331","message":"A validation error occurred: name is too long"}}'
    world.dv.failures.append(ValidationFailed("A validation error occurred: name is too long", status=400,
                                              code="0x80044331", text=answer, method="PATCH", url="accounts(...)"))
    event = world.fno_event("customers", USMF_001)
    assert await harness.worker.handle(delivery(event.to_json(), attempt=1)) == "failed"
    [error] = harness.errors.entries
    assert (error.category, error.attempts, error.target_status, error.target_code) == \
        ("application", 1, 400, "0x80044331")
    assert "PATCH accounts(...) -> HTTP 400" in error.text and answer in error.text  # the target's whole answer
    assert [e.outcome for e in harness.activity.entries] == ["failed"]
    assert world.links.rows == {}


async def test_a_primary_wins_refusal_is_logged_as_conflict_without_retry(world: World, harness: Harness) -> None:
    world.fo.add("VendorsV2", vendor())
    keys = {"dataAreaId": "usmf", "VendorAccountNumber": "V-001"}
    row_id = (await world.applier.apply(world.fno_event("vendors", keys))).target_id or ""
    world.fo.record("VendorsV2", **keys)["VendorOrganizationName"] = "F&O name"
    world.dv.tables["msdyn_vendors"][row_id]["msdyn_vendorname"] = "Dataverse name"  # both; F&O is primary
    event = world.dv_event("vendors", row_id, "refetch")
    assert await harness.worker.handle(delivery(event.to_json())) == "failed"
    [error] = harness.errors.entries
    assert error.category == "conflict" and error.attempts == 1 and "primary wins" in error.text
    assert harness.queue.sent == []


async def test_a_latest_wins_conflict_is_no_error_and_both_sides_agree(world: World, harness: Harness) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Older edit"
    event = world.dv_event("customers", row_id, "refetch")
    event = event.model_copy(update={"occurred_at": event.occurred_at.replace(year=2020)})
    assert await harness.worker.handle(delivery(event.to_json())) == "applied"
    assert harness.errors.entries == []
    assert world.account_row()["name"] == world.fo.record("CustomersV3", **USMF_001)["OrganizationName"]


async def test_a_body_that_is_not_a_change_event_is_logged_as_application(harness: Harness) -> None:
    body = b'{"v": 1, "source": "sap"}'
    assert await harness.worker.handle(delivery(body)) == "failed"
    [error] = harness.errors.entries
    assert (error.category, error.map, error.key, error.source) == ("application", "unknown", "", "")
    assert error.change == body.decode() and error.text.startswith("BadChange: not a change event")
    assert harness.activity.entries == []


async def test_a_change_naming_an_unknown_map_is_logged_as_application(world: World, harness: Harness) -> None:
    event = world.fno_event("customers", USMF_001).model_copy(update={"map": "invoices"})
    assert await harness.worker.handle(delivery(event.to_json(), attempt=1)) == "failed"
    [error] = harness.errors.entries
    assert error.category == "application" and "invoices" in error.text


def test_backoff_doubles_after_each_failed_attempt_up_to_the_cap() -> None:
    assert [backoff_seconds(n) for n in range(1, 12)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0,
                                                          300.0]
    assert [backoff_seconds(n, base=2, cap=10) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]


async def test_retrying_and_applied_entries_of_one_fno_record_share_its_key(world: World,
                                                                           harness: Harness) -> None:
    world.fo.add("CustomersV3", customer(CustomerGroupId="20"))  # group 20 is not in Dataverse yet
    body = world.fno_event("customers", USMF_001).to_json()
    assert await harness.worker.handle(delivery(body, attempt=1)) == "retrying"
    world.dv.add("msdyn_customergroups", {"msdyn_groupid": "20", "_msdyn_company_value": world.company_id})
    assert await harness.redeliver() == "applied"
    retrying, applied = harness.activity.entries
    assert (retrying.outcome, applied.outcome) == ("retrying", "applied")
    assert retrying.key == applied.key == "USMF|US-001"


async def test_unexpected_error_is_retried_then_logged_as_system(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    body = world.fno_event("customers", USMF_001).to_json()
    for _ in range(3):
        world.dv.failures.append(RuntimeError("connection reset outside the connector"))
    assert await harness.worker.handle(delivery(body, attempt=1)) == "retrying"
    assert await harness.redeliver() == "retrying"
    assert await harness.redeliver() == "failed"
    [error] = harness.errors.entries
    assert error.category == "system" and error.text == "RuntimeError: connection reset outside the connector"


def test_error_families() -> None:
    conflict = ConflictError("Precondition failed", status=412)
    assert not is_transient(conflict) and category_of(conflict) == "conflict"
    throttled = ThrottledError("slow down", retry_after=1, status=429)
    assert is_transient(throttled) and category_of(throttled) == "throttled"
    unavailable = TransientError("Service Unavailable", status=503)
    assert is_transient(unavailable) and category_of(unavailable) == "system"
    refused = AuthFailed("Forbidden", status=403)
    assert not is_transient(refused) and category_of(refused) == "system"
    assert not is_transient(MapValueError("bad value")) and category_of(MapValueError("x")) == "application"
    assert is_transient(LookupPending("customers", "msdyn_customergroupid", "group 20"))


def test_a_link_too_large_is_permanent() -> None:
    error = LinkTooLarge("link customers/USMF|US-001: values takes 70000 bytes")
    assert not is_transient(error) and category_of(error) == "application"


async def test_throttling_is_retried_no_sooner_than_the_target_asked(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    world.dv.failures.append(ThrottledError("Number of requests exceeded the limit", retry_after=20, status=429,
                                            method="PATCH", url="accounts"))
    before = datetime.now(UTC)
    assert await harness.worker.handle(delivery(world.fno_event("customers", USMF_001).to_json())) == "retrying"
    [again] = harness.queue.sent
    assert again.scheduled_at is not None and again.scheduled_at >= before + timedelta(seconds=20)


async def test_a_target_down_past_the_auto_pause_time_pauses_the_map_and_parks_instead_of_retrying(
        world: World) -> None:
    modes = MapModes(world.maps, MemoryModes(), MemoryParked(), changes=MemorySends(), jobs=MemorySends(),
                     cache_seconds=0)
    harness = Harness(world)
    harness.worker.modes = modes
    harness.worker.auto_pause_after = timedelta(seconds=60)
    world.fo.add("CustomersV3", customer())
    down = TransientError("Service Unavailable", status=503, method="PATCH", url="accounts")
    world.dv.failures.append(down)
    body = world.fno_event("customers", USMF_001).to_json()
    assert await harness.worker.handle(delivery(body)) == "retrying"  # a first failure is only retried
    [retry] = harness.due()
    assert (await modes.state("customers")).mode == "running"
    # the retry, a minute and more after the first failure, fails again: the map pauses and the change parks
    world.dv.failures.append(down)
    first = (datetime.now(UTC) - timedelta(seconds=75)).isoformat()
    again = Delivery(body=retry.body, message_id=retry.message_id, session_id=retry.session_id, delivery_count=1,
                     properties={**retry.properties, FIRST_FAILED: first})
    assert await harness.worker.handle(again) == "parked"
    state = await modes.state("customers")
    assert (state.mode, state.by) == ("error", "auto-pause")
    assert state.reason.startswith("Dataverse has failed for 75 s: Service Unavailable")
    assert harness.queue.sent == [] and harness.errors.entries == [] and harness.holds.rows == {}
    assert await modes.parked.count("customers") == (1, 1)
    [entry] = [e for e in harness.activity.entries if e.outcome == "parked"]
    assert entry.reason.startswith("parked: the map is paused after errors") and entry.message_id == "msg-1"
    # later changes of the map park at once, without touching Dataverse
    later = world.fno_event("customers", USMF_001).to_json()
    assert await harness.worker.handle(delivery(later, message_id="msg-2")) == "parked"
    assert await modes.parked.count("customers") == (1, 2)
