"""Chaos: a proxy in front of each simulator answers 15 % of the engine's requests 429 and 15 % 503 (both with
Retry-After: 1) and drops 5 % of its connections mid-request, half before the target saw the request and half
after the target answered (a write committed that the engine never hears of); the first two writes through each
proxy (the first creates) are always dropped after the target answered, so each run meets that case. Customers
are created on both sides and then changed on their own side while that goes on.

Checks: every final value on both sides (converged); no key has two rows on either side and no more creates were
committed than records (a create never lands twice); each record written by the engine at most as often as it
changed, plus once per dropped answer of a request that named it (the one write that cannot be told apart from a
lost one: the engine sends it again, an upsert by key, so it is a second write of the same values, never a second
row); the error log holds nothing of these records."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.chaos.conftest import ChaosStack, record_figures, scaled, wait_quiet
from tests.chaos.records import (
    both_sides,
    created_ids,
    dv_create,
    dv_rows,
    dv_update,
    fno_address,
    fno_create,
    fno_update,
    record_writes,
)
from tests.e2e.conftest import eventually, reset_stats

PER_SIDE = scaled(15, 50)
ROUNDS = scaled(3, 5)
CONVERGE = scaled(300, 900)

pytestmark = pytest.mark.timeout(CONVERGE + 240)


def test_faulty_network_to_both_simulators_loses_nothing_and_creates_nothing_twice(stack: ChaosStack) -> None:
    prefix = f"CF{uuid.uuid4().hex[:4].upper()}-"
    from_fno = [f"{prefix}F{n:03d}" for n in range(PER_SIDE)]
    from_dv = [f"{prefix}D{n:03d}" for n in range(PER_SIDE)]
    expected: dict[str, tuple[str, str]] = {}
    changes = dict.fromkeys(from_fno + from_dv, 1 + ROUNDS)
    dv_ids: dict[str, str] = {}
    wait_quiet(stack)
    reset_stats(stack)
    stack.faults(p429=0.15, p503=0.15, pdrop=0.05, drop_next_writes=2)
    started = time.monotonic()
    try:
        def fno_side() -> None:
            for account in from_fno:
                fno_create(stack, account, f"F&O 0 {account}", "+1 555 0100")
            for r in range(1, ROUNDS + 1):
                time.sleep(1)  # a round apart: each round is applied on its own, not coalesced with the last
                for account in from_fno:
                    fno_update(stack, account, OrganizationName=f"F&O {r} {account}")
            for account in from_fno:
                expected[account] = (f"F&O {ROUNDS} {account}", "+1 555 0100")

        def dv_side() -> None:
            for account in from_dv:
                dv_ids[account] = dv_create(stack, account, f"DV {account}", "+1 555 0200")
            for r in range(1, ROUNDS + 1):
                time.sleep(1)
                for account in from_dv:
                    dv_update(stack, dv_ids[account], telephone1=f"+1 555 2{r:03d}")
            for account in from_dv:
                expected[account] = (f"DV {account}", f"+1 555 2{ROUNDS:03d}")

        writers = [threading.Thread(target=fno_side), threading.Thread(target=dv_side)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        assert len(expected) == 2 * PER_SIDE

        def missing() -> list[str]:
            fo, dv, _ = both_sides(stack, prefix)
            return [a for a, values in expected.items() if fo.get(a) != values or dv.get(a) != values]

        try:
            eventually(lambda: not missing(), timeout=CONVERGE, what="every change on both sides")
        except AssertionError:
            raise AssertionError(f"not converged: {missing()[:10]}") from None
        converged = time.monotonic() - started
        wait_quiet(stack, timeout=180)
    finally:
        stack.faults(reset=False)
    fates = {"dataverse": stack.dv_proxy.figures(), "fno": stack.fno_proxy.figures()}  # type: ignore[union-attr]
    dropped = [*stack.dv_proxy.dropped_after, *stack.fno_proxy.dropped_after]  # type: ignore[union-attr]

    fo, dv, extra_rows = both_sides(stack, prefix)
    fno_writes, dv_writes = record_writes(stack)
    fno_creates, dv_creates = created_ids(stack)
    ids = {row["accountnumber"]: row["accountid"] for row in dv_rows(stack, prefix)}
    rewrites = doubled = 0
    for account, count in changes.items():
        names = [account.encode(), ids[account].encode()]
        dropped_here = sum(1 for seen in dropped if seen.method != "GET"
                           and any(name in seen.path.encode() + seen.body for name in names))
        # the test wrote the record's own side only: the other side's writes are the engine's
        engine = fno_writes.get(fno_address(account), 0) if account in dv_ids else dv_writes.get(ids[account], 0)
        rewrites += max(0, engine - count)
        doubled += max(0, engine - count - dropped_here)
    engine_dv_writes = sum(dv_writes.get(ids[a], 0) for a in from_fno)
    engine_fno_writes = sum(fno_writes.get(fno_address(a), 0) for a in from_dv)
    figures = {
        "changes": sum(changes.values()), "records": len(changes), "lost": len([a for a in expected
                                                                                if fo.get(a) != expected[a]
                                                                                or dv.get(a) != expected[a]]),
        "doubled": doubled + extra_rows + max(0, fno_creates - 2 * PER_SIDE) + max(0, dv_creates - 2 * PER_SIDE),
        "converged_s": round(converged, 1), "duplicate_rows": extra_rows,
        "creates_committed": {"fno": fno_creates, "dataverse": dv_creates, "expected_each": 2 * PER_SIDE},
        "engine_writes": {"dataverse": engine_dv_writes, "fno": engine_fno_writes},
        "rewrites_after_dropped_answers": rewrites, "dropped_after_forward": len(dropped),
        "dropped_after_forward_requests": sorted(f"{seen.method} {seen.path.split('?')[0][:60]}" for seen in dropped),
        "proxy": fates,
    }
    record_figures("faulty network (429/503 30 %, drops 5 %)", **figures)
    assert figures["lost"] == 0
    assert extra_rows == 0, "a key has two rows: a create landed twice"
    assert (fno_creates, dv_creates) == (2 * PER_SIDE, 2 * PER_SIDE), figures["creates_committed"]
    assert doubled == 0, figures
    assert fates["dataverse"].get("throttle", 0) and fates["fno"].get("unavailable", 0), fates
    assert fates["dataverse"].get("drop_after", 0) >= 2 and fates["fno"].get("drop_after", 0) >= 2, fates
    assert [e for e in stack.errors(status="all") if e["key"].startswith(f"USMF|{prefix}")] == []
