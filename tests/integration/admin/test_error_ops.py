"""Pure parts of the error-log operations: resubmission ids and dead-letters without a row."""

from __future__ import annotations

from datetime import UTC, datetime

from core.events.model import ChangeEvent
from core.ops.errors import from_dead_letter, resubmit_id
from core.store.deadletters import DeadLetter


def test_resubmit_ids_count_on() -> None:
    assert resubmit_id("evt-1|customers") == "evt-1|customers|resubmit-1"
    assert resubmit_id("evt-1|customers|resubmit-1") == "evt-1|customers|resubmit-2"
    assert resubmit_id("evt-1|customers|resubmit-9") == "evt-1|customers|resubmit-10"
    assert resubmit_id("evt|resubmit-x") == "evt|resubmit-x|resubmit-1"


def letter(body: str, **props: str) -> DeadLetter:
    return DeadLetter(message_id="m1", session_id="customers|USMF|1", body=body, reason="TTLExpiredException",
                      description="The message expired", delivery_count=2,
                      enqueued_at=datetime(2026, 11, 21, 9, tzinfo=UTC), sequence_number=7, properties=props)


def test_dead_letter_of_a_change_event() -> None:
    event = ChangeEvent(event_id="e1", map="customers", source="dataverse", entity="account", operation="delete",
                        occurred_at=datetime(2026, 11, 21, 8, tzinfo=UTC))
    entry = from_dead_letter(letter(event.to_json()))
    assert (entry.id, entry.map, entry.source, entry.operation, entry.category) == (
        "m1", "customers", "dataverse", "delete", "system")
    assert entry.text == "TTLExpiredException: The message expired"
    assert entry.attempts == 2 and entry.session_id == "customers|USMF|1" and entry.change == event.to_json()


def test_dead_letter_of_something_else_keeps_what_the_broker_knows() -> None:
    entry = from_dead_letter(letter("not json", map="vendors", source="fno", operation="update"))
    assert (entry.map, entry.source, entry.operation, entry.change) == ("vendors", "fno", "update", "not json")
