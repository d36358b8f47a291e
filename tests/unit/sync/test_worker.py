"""The worker (core.sync.worker): what a delivery's outcome becomes (activity, retry, error log)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from core.connectors.errors import AuthFailed, ConflictError, ThrottledError, TransientError, ValidationFailed
from core.maps import MapValueError
from core.store.links import LinkTooLarge
from core.sync.errors import LookupPending, category_of, is_transient
from core.sync.worker import Delivery, RetryLater, Worker, backoff_seconds
from tests.unit.sync.fakes import MemoryActivity, MemoryErrors
from tests.unit.sync.world import World, customer

USMF_001 = {"dataAreaId": "usmf", "CustomerAccount": "US-001"}


class Harness:
    def __init__(self, world: World, max_attempts: int = 3) -> None:
        self.activity = MemoryActivity()
        self.errors = MemoryErrors()
        self.waits: list[float] = []
        self.worker = Worker(world.applier, self.activity, self.errors, max_attempts=max_attempts,
                             backoff_base=0.5, sleep=self._sleep)

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def harness(world: World) -> Harness:
    return Harness(world)


def delivery(body: str | bytes, attempt: int = 1) -> Delivery:
    data = body.encode() if isinstance(body, str) else body
    return Delivery(body=data, message_id="msg-1", session_id="customers|USMF|US-001", delivery_count=attempt)


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
    assert harness.errors.entries == []
    assert harness.waits == []  # a first delivery does not wait


async def test_skipped_change_is_recorded_without_latency(world: World, harness: Harness) -> None:
    event = world.fno_event("customers", USMF_001)  # the record is not there: skipped
    assert await harness.worker.handle(delivery(event.to_json())) == "skipped"
    [entry] = harness.activity.entries
    assert entry.outcome == "skipped" and entry.latency_ms is None
    assert harness.errors.entries == []


async def test_transient_error_before_the_last_attempt_is_retried(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    world.dv.failures.append(ThrottledError("Number of requests exceeded the limit", retry_after=5, status=429,
                                            method="PATCH", url="accounts"))
    event = world.fno_event("customers", USMF_001)
    with pytest.raises(RetryLater):
        await harness.worker.handle(delivery(event.to_json(), attempt=2))
    [entry] = harness.activity.entries
    assert entry.outcome == "retrying" and entry.reason.startswith("throttled:")
    assert harness.errors.entries == []
    assert harness.waits == [0.5]  # delivery 2 waits the base backoff first


async def test_lookup_pending_is_retried_then_logged_on_the_last_attempt(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer(CustomerGroupId="99"))  # group 99 never reaches Dataverse
    body = world.fno_event("customers", USMF_001).to_json()
    for attempt in (1, 2):
        with pytest.raises(RetryLater):
            await harness.worker.handle(delivery(body, attempt))
    assert await harness.worker.handle(delivery(body, attempt=3)) == "failed"
    assert [e.outcome for e in harness.activity.entries] == ["retrying", "retrying", "failed"]
    [error] = harness.errors.entries
    assert (error.id, error.map, error.key, error.category) == ("msg-1", "customers", "USMF|US-001", "lookup_pending")
    assert error.attempts == 3 and error.session_id == "customers|USMF|US-001"
    assert error.change == body and json.loads(error.change)["keys"] == USMF_001
    assert error.text.startswith("LookupPending:") and "msdyn_customergroupid" in error.text
    assert error.status == "open" and error.first_at.tzinfo is not None
    assert harness.waits == [0.5, 1.0]


async def test_a_deleted_target_waits_for_its_delete_and_is_written_again_on_the_last_attempt(
        world: World, harness: Harness) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"].pop(row_id)  # deleted in Dataverse, and that delete never syncs
    world.fo.record("CustomersV3", **USMF_001)["OrganizationName"] = "Contoso Again"
    body = world.fno_event("customers", USMF_001).to_json()
    for attempt in (1, 2):
        with pytest.raises(RetryLater):
            await harness.worker.handle(delivery(body, attempt))
        assert world.account() is None
    assert await harness.worker.handle(delivery(body, attempt=3)) == "applied"
    assert [(e.outcome, e.reason.split(":")[0]) for e in harness.activity.entries] == [
        ("retrying", "conflict"), ("retrying", "conflict"), ("applied", "created again")]
    assert world.account_row()["name"] == "Contoso Again" and harness.errors.entries == []


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


async def test_conflict_skipped_is_logged_as_conflict_without_retry(world: World, harness: Harness) -> None:
    row_id = await world.linked_customer()
    world.dv.tables["accounts"][row_id]["name"] = "Older edit"
    event = world.dv_event("customers", row_id, "refetch")
    event = event.model_copy(update={"occurred_at": event.occurred_at.replace(year=2020)})
    assert await harness.worker.handle(delivery(event.to_json())) == "failed"
    [error] = harness.errors.entries
    assert error.category == "conflict" and error.attempts == 1


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


def test_backoff_doubles_from_the_second_delivery_up_to_the_cap() -> None:
    assert [backoff_seconds(n) for n in range(1, 10)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert [backoff_seconds(n, base=2, cap=10) for n in (0, 1, 2, 3, 4, 5)] == [0.0, 0.0, 2, 4, 8, 10]


async def test_retrying_and_applied_entries_of_one_fno_record_share_its_key(world: World,
                                                                           harness: Harness) -> None:
    world.fo.add("CustomersV3", customer(CustomerGroupId="20"))  # group 20 is not in Dataverse yet
    body = world.fno_event("customers", USMF_001).to_json()
    with pytest.raises(RetryLater):
        await harness.worker.handle(delivery(body, attempt=1))
    world.dv.add("msdyn_customergroups", {"msdyn_groupid": "20", "_msdyn_company_value": world.company_id})
    assert await harness.worker.handle(delivery(body, attempt=2)) == "applied"
    retrying, applied = harness.activity.entries
    assert (retrying.outcome, applied.outcome) == ("retrying", "applied")
    assert retrying.key == applied.key == "USMF|US-001"


async def test_unexpected_error_is_retried_then_logged_as_system(world: World, harness: Harness) -> None:
    world.fo.add("CustomersV3", customer())
    body = world.fno_event("customers", USMF_001).to_json()
    world.dv.failures.append(RuntimeError("connection reset outside the connector"))
    with pytest.raises(RetryLater):
        await harness.worker.handle(delivery(body, attempt=1))
    world.dv.failures.append(RuntimeError("connection reset outside the connector"))
    assert await harness.worker.handle(delivery(body, attempt=3)) == "failed"
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
