"""The changes queue's depth: not asked of an emulator (it has no management API), and a namespace that does
not answer gives no figure and the reason, never an exception into the metrics."""

from __future__ import annotations

from core.store.queuedepth import QueueDepthReader
from devstack.processes import free_port


async def test_an_emulator_is_not_asked() -> None:
    reader = QueueDepthReader("Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;"
                              "UseDevelopmentEmulator=true", "changes")
    depth, note = await reader()
    assert depth is None and "no management API" in note


async def test_a_namespace_that_does_not_answer_gives_the_reason() -> None:
    reader = QueueDepthReader(f"Endpoint=sb://127.0.0.1:{free_port()}/;SharedAccessKeyName=k;SharedAccessKey=v",
                              "changes")
    try:
        depth, note = await reader()
    finally:
        await reader.close()
    assert depth is None and "management API did not answer" in note and "Manage" in note
