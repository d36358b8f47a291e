"""A Dataverse value type the webhook parser does not decode (issue 18) on its way through the worker: in a column
no map uses it changes nothing; in a mapped column it is an application error in the error log naming the column,
while the webhook itself was accepted (core.events.dataverse carries such values as a marker)."""

from __future__ import annotations

from core.events.dataverse import unsupported
from tests.unit.sync.test_worker import Harness, delivery
from tests.unit.sync.world import World


async def test_an_unsupported_value_in_an_unmapped_column_changes_nothing(world: World) -> None:
    harness = Harness(world)
    row_id = await world.linked_customer()
    image = world.image(row_id) | {"to": unsupported("EntityCollection"), "new": unsupported("SomethingNew")}
    event = world.dv_event("customers", row_id, values=image, version="200")
    outcome = await harness.worker.handle(delivery(event.to_json()))
    assert outcome in ("applied", "skipped") and harness.errors.entries == []
    assert world.fo.writes() == []


async def test_an_unsupported_value_in_a_mapped_column_is_an_application_error_naming_it(world: World) -> None:
    harness = Harness(world)
    row_id = await world.linked_customer()
    image = world.image(row_id) | {"name": unsupported("EntityCollection")}
    event = world.dv_event("customers", row_id, values=image, version="200")
    assert await harness.worker.handle(delivery(event.to_json())) == "failed"
    [error] = harness.errors.entries
    assert error.category == "application"
    assert "'name'" in error.text and "EntityCollection" in error.text, error.text
    assert world.fo.writes() == []
