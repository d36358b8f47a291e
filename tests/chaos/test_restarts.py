"""Chaos: the processes under the engine die in the middle of a burst in both directions. A stack of this module's
own (its Service Bus emulator is restarted and its host killed), without proxies; the sweep runs at start and every
15 s, reading Dataverse both ways (failed System Jobs and change tracking).

A burst: RECORDS customers (made in F&O and synced first) each renamed in F&O and given a new phone in Dataverse,
both as `$batch` (the two changes of a record touch different columns: no conflict). Checks, per scenario: every
final value on both sides, no key with two rows, each record written by the engine at most once per side (its one
change from the other side), nothing of them in the error log; figures: what was in flight when it happened, how
many changes came back through the sweep, seconds to converge.

- Service Bus emulator restarted mid-burst (stop, start on the same port): the emulator keeps messages in memory,
  so every change on the queue then (accepted with 202, not yet applied) and every scheduled retry is gone, and the
  webhooks refused while it was down end as failed System Jobs or F&O errors. Real Service Bus is durable: none of
  that is lost there. Here the sweep brings them back (F&O rows by ModifiedDateTime, Dataverse by change tracking and
  failed jobs), so nothing is lost in the end: the figures say how many the sweep had to find.
- Functions host killed (kill -9 of its process group) while the burst is being applied, every change already on
  the queue; restarted at once: the messages it held come back after their lock (5 s here).
- Host killed before the burst's webhooks are delivered (the burst is made while it is down), then started: the
  sweep at start finds every change.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.connectors.batch import BatchOp
from tests.chaos.conftest import ChaosStack, chaos_stack, record_figures, scaled, wait_quiet
from tests.chaos.records import both_sides, dv_rows, fno_address, record_writes
from tests.e2e.conftest import drain, eventually, reset_stats, send_batch
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import ServiceBusEmulator, run_emulator, test_topology_document

RECORDS = scaled(40, 200)
PER_BATCH = 20
CONVERGE = scaled(240, 600)

pytestmark = pytest.mark.timeout(CONVERGE + 300)


@pytest.fixture(scope="module")
def bus() -> Iterator[ServiceBusEmulator]:
    with run_emulator(test_topology_document(), name="servicebus-chaos") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def stack(azurite: str, bus: ServiceBusEmulator, devhost: Callable[..., RunningHost]) -> Iterator[ChaosStack]:
    with chaos_stack(azurite, bus, devhost, proxies=False, SWEEP_DATAVERSE="both",
                     SWEEP_INTERVAL_SECONDS="0", SWEEP_OVERLAP_SECONDS="10") as running:
        yield running


class Burst:
    """RECORDS customers made in F&O and synced; `write(part)` renames them in F&O and rephones them in Dataverse."""

    def __init__(self, stack: ChaosStack, letter: str) -> None:
        self.stack = stack
        self.prefix = f"C{letter}{uuid.uuid4().hex[:4].upper()}-"
        self.accounts = [f"{self.prefix}{n:03d}" for n in range(RECORDS)]
        creates = [BatchOp("POST", "CustomersV3", {
            "dataAreaId": "usmf", "CustomerAccount": a, "OrganizationName": f"Before {a}", "PartyType": "Organization",
            "CustomerGroupId": "10", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30",
            "PrimaryContactPhone": "+1 555 0000"}) for a in self.accounts]
        for start in range(0, RECORDS, 100):
            send_batch(stack.fo, creates[start:start + 100], each_write_atomic=True)
        self.ids: dict[str, str] = eventually(
            lambda: (rows := {r["accountnumber"]: r["accountid"] for r in dv_rows(stack, self.prefix)})
            and len(rows) == RECORDS and rows, timeout=180, what=f"the {RECORDS} customers in Dataverse")
        wait_quiet(stack)
        reset_stats(stack)
        self.since = datetime.now(UTC).isoformat()
        self.expected = {a: (f"Burst {a}", f"+1 555 9{n:03d}") for n, a in enumerate(self.accounts)}

    def write(self, on_half: Callable[[], None] | None = None) -> None:
        """Both sides' changes from two threads, `$batch` of PER_BATCH; `on_half` runs once half of each is sent."""
        half = threading.Barrier(3 if on_half else 1)

        def side(ops: list[BatchOp], client: Any, atomic: bool) -> None:
            for start in range(0, len(ops), PER_BATCH):
                if on_half and start == (len(ops) // 2 // PER_BATCH) * PER_BATCH:
                    half.wait(60)  # both writers at half way
                    half.wait(60)  # and on_half done
                send_batch(client, ops[start:start + PER_BATCH], each_write_atomic=atomic)

        fno_ops = [BatchOp("PATCH", f"CustomersV3({fno_address(a)})?cross-company=true",
                           {"OrganizationName": self.expected[a][0]}) for a in self.accounts]
        dv_ops = [BatchOp("PATCH", f"accounts({self.ids[a]})", {"telephone1": self.expected[a][1]})
                  for a in self.accounts]
        writers = [threading.Thread(target=side, args=(fno_ops, self.stack.fo, True)),
                   threading.Thread(target=side, args=(dv_ops, self.stack.dv, False))]
        for writer in writers:
            writer.start()
        if on_half:
            half.wait(120)
            on_half()
            half.wait(120)
        for writer in writers:
            writer.join()

    def missing(self) -> list[str]:
        fo, dv, _ = both_sides(self.stack, self.prefix)
        return [a for a, v in self.expected.items() if fo.get(a) != v or dv.get(a) != v]

    def converge(self, what: str) -> float | None:
        """Seconds until every value is on both sides; None when CONVERGE passed first (check() says what)."""
        started = time.monotonic()
        try:
            eventually(lambda: not self.missing(), timeout=CONVERGE, what=what)
        except AssertionError:
            return None
        took = time.monotonic() - started
        wait_quiet(self.stack)
        return took

    def history(self, accounts: list[str]) -> str:
        """What the activity log says of `accounts`, oldest first: why a record was written twice."""
        lines = []
        for account in accounts:
            lines.append(f"{account} (Dataverse row {self.ids[account]}):")
            entries = self.stack.activity(map="customers", since=self.since, key=f"USMF|{account}")
            entries += self.stack.activity(map="customers", since=self.since, key=f"dataverse:{self.ids[account]}")
            lines += [f"  {e['at'][11:23]} {e['source']} {e['operation']} {e['outcome']}: {e['reason'][:160]} "
                      f"({e['event_id']})" for e in sorted(entries, key=lambda e: e["at"])]
        return "\n".join(lines)

    def check(self, scenario: str, converged: float | None, **extra: Any) -> None:
        fo, dv, extra_rows = both_sides(self.stack, self.prefix)
        wrong = {a: {"fno": fo.get(a), "dataverse": dv.get(a)} for a in self.missing()}
        fno_writes, dv_writes = record_writes(self.stack)
        # the test wrote each record once on each side; the rest is the engine's, one per side at most
        doubled = {a: (fno_writes.get(fno_address(a), 0) - 1, dv_writes.get(self.ids[a], 0) - 1)
                   for a in self.accounts}
        doubled = {a: w for a, w in doubled.items() if max(w) > 1}
        swept = {e["event_id"] for e in self.stack.activity(map="customers", since=self.since)
                 if e["reason"].startswith("sweep:") and (e["key"].startswith(f"USMF|{self.prefix}")
                                                          or e["key"].removeprefix("dataverse:").lower()
                                                          in self.ids.values())}
        errors = [e for e in self.stack.errors(status="all") if e["key"].startswith(f"USMF|{self.prefix}")]
        record_figures(scenario, changes=2 * RECORDS, lost=len(wrong),
                       doubled=sum(max(0, w[0] - 1) + max(0, w[1] - 1) for w in doubled.values()) + extra_rows,
                       converged_s=round(converged, 1) if converged is not None else f"not in {CONVERGE}",
                       came_back_through_sweep=len(swept), errors=len(errors), **extra)
        assert wrong == {}, (f"not arrived in {CONVERGE} s ({len(wrong)}; expected name 'Burst <account>', phone "
                             f"'+1 555 9<n>'): {dict(list(wrong.items())[:8])}")
        assert extra_rows == 0
        assert doubled == {}, (f"records written more than once on a side by the engine (F&O, Dataverse): {doubled}"
                               f"\n{self.history(list(doubled)[:3])}")
        assert errors == []


def kill_host(stack: ChaosStack) -> None:
    process = stack.host.process.proc
    assert process is not None
    os.killpg(process.pid, signal.SIGKILL)  # no shutdown of any kind: what a crash or a lost worker does
    process.wait(10)


def test_servicebus_emulator_restarted_mid_burst(stack: ChaosStack, bus: ServiceBusEmulator) -> None:
    burst = Burst(stack, "S")
    at_restart: dict[str, int] = {}

    def restart() -> None:
        at_restart["not_yet_applied"] = len(burst.missing())
        bus.process.stop()
        time.sleep(1)
        bus.process.start()

    burst.write(on_half=restart)
    drain(stack)
    after_burst = len(burst.missing())
    converged = burst.converge("every change after the emulator's restart")
    burst.check("Service Bus emulator restarted mid-burst", converged,
                not_yet_applied_at_restart=at_restart["not_yet_applied"],
                not_applied_when_the_burst_ended=after_burst)


def test_host_killed_mid_apply_with_the_burst_on_the_queue(stack: ChaosStack) -> None:
    burst = Burst(stack, "K")
    burst.write()
    drain(stack)  # every webhook and event delivered: the whole burst is on the queue or applied
    at_kill = eventually(lambda: (n := len(burst.missing())) < RECORDS and n, timeout=60, what="the apply under way")
    kill_host(stack)
    stack.host.process.start()
    converged = burst.converge("every change after the host's restart")
    burst.check("Functions host killed (kill -9) mid-apply, restarted", converged, not_yet_applied_at_kill=at_kill)


def test_host_killed_before_the_burst_is_delivered(stack: ChaosStack) -> None:
    burst = Burst(stack, "D")
    kill_host(stack)
    burst.write()
    drain(stack, timeout=CONVERGE)  # every webhook failed (a System Job), every F&O event in its errors list
    failed_jobs = len(stack.rows("asyncoperations", **{"$filter": "statuscode eq 31", "$select": "asyncoperationid"}))
    stack.host.process.start()
    converged = burst.converge("every change made while the host was down")
    burst.check("Functions host killed (kill -9) before the burst, restarted", converged,
                failed_system_jobs=failed_jobs)
