"""Pure parts of the fno-events side of the error log: which queue an error id is looked for in, and
what a dead-letter of raw F&O body reads as."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.ops.errors import DeadLetterSource
from core.store.deadletters import DeadLetter, DeadLetters

NOWHERE = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"


@pytest.fixture
async def sources() -> list[DeadLetterSource]:  # clients are built, never connected
    return [DeadLetterSource(DeadLetters(NOWHERE, "changes"), carries="changes"),
            DeadLetterSource(DeadLetters(NOWHERE, "fno-events"), carries="fno_events")]


async def test_each_error_id_is_looked_for_in_one_queue_only(sources: list[DeadLetterSource]) -> None:
    changes, fno_events = sources
    assert (changes.message_id("fno:E1|customers"), fno_events.message_id("fno:E1|customers")) == (
        "fno:E1|customers", None)
    assert (changes.message_id("fno-events:E1"), fno_events.message_id("fno-events:E1")) == (None, "E1")


async def test_fno_events_dead_letter_reads_as_an_ingest_failure(sources: list[DeadLetterSource]) -> None:
    letter = DeadLetter(message_id="E1", session_id=None, body='{"BusinessEventId": "x"}', reason=None,
                        description=None, delivery_count=10, enqueued_at=datetime(2026, 11, 21, 9, tzinfo=UTC),
                        sequence_number=3, properties={})
    entry = sources[1].entry(letter)
    assert (entry.id, entry.map, entry.source, entry.operation, entry.category) == (
        "fno-events:E1", "unknown", "fno", "ingest", "system")
    assert (entry.text, entry.attempts, entry.change, entry.session_id) == (
        "dead-lettered without a reason", 10, '{"BusinessEventId": "x"}', "")
    assert sources[0].entry(letter).id == "E1"  # the changes queue's reading is unchanged
