"""Chaos: duplicate and out-of-order deliveries. The proxy in front of the host holds every webhook Dataverse sends
and every event F&O sends (it answers 200 for the host, which never sees them) while records change several
times on each side: two existing customers renamed VERSIONS times (one in F&O, one in Dataverse), one created in
Dataverse and changed twice, one created in F&O and changed once. Then the held bodies are posted straight to
the ingest routes, newest first and then all again in a shuffled order (each delivered twice, creates after their
updates).

Checks: each record ends at its newest version on both sides, no change event is applied twice (activity: at most
one `applied` per event id), the engine writes each record at most once per distinct version it was sent, no key
has two rows, and nothing is in the error log."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter

import httpx
import pytest

from tests.chaos.conftest import INGEST_PATHS, ChaosStack, record_figures, scaled, wait_quiet
from tests.chaos.records import (
    both_sides,
    dv_create,
    dv_rows,
    dv_update,
    fno_address,
    fno_create,
    fno_update,
    record_writes,
)
from tests.e2e.conftest import drain, eventually, reset_stats

VERSIONS = scaled(5, 20)
_SKIP_HEADERS = {"host", "content-length", "connection", "transfer-encoding"}

pytestmark = pytest.mark.timeout(420)


def test_replayed_and_reordered_deliveries_end_at_the_newest_version_applied_once(stack: ChaosStack) -> None:
    assert stack.host_proxy is not None
    prefix = f"CR{uuid.uuid4().hex[:4].upper()}-"
    a, b, c, d = (f"{prefix}{letter}" for letter in "ABCD")
    fno_create(stack, a, f"{a} v0", "+1 555 0000")
    b_id = dv_create(stack, b, f"{b} v0", "+1 555 0000")
    eventually(lambda: (lambda fo, dv, _: a in dv and b in fo)(*both_sides(stack, prefix)), timeout=120,
               what="the two existing customers on both sides")
    wait_quiet(stack)
    reset_stats(stack)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))

    stack.host_proxy.hold = set(INGEST_PATHS)
    stack.host_proxy.held.clear()
    try:
        for n in range(1, VERSIONS + 1):
            fno_update(stack, a, OrganizationName=f"{a} v{n}")
            dv_update(stack, b_id, name=f"{b} v{n}")
        c_id = dv_create(stack, c, f"{c} v0", "+1 555 3000")
        dv_update(stack, c_id, telephone1="+1 555 3001")
        dv_update(stack, c_id, telephone1="+1 555 3002")
        fno_create(stack, d, f"{d} v0", "+1 555 4000")
        fno_update(stack, d, OrganizationName=f"{d} v1")
        drain(stack)
    finally:
        stack.host_proxy.hold = set()
    held = list(stack.host_proxy.held)
    test_writes = record_writes(stack)
    names = {a: [a], b: [b_id], c: [c_id], d: [d]}
    per_record = {key: sum(1 for seen in held if any(n.encode() in seen.body for n in ids))
                  for key, ids in names.items()}
    assert per_record[a] >= 1 and per_record[b] >= 1 and per_record[c] >= 1 and per_record[d] >= 1, per_record

    order = list(reversed(held))
    shuffled = list(held)
    random.Random(18).shuffle(shuffled)
    started = time.monotonic()
    with httpx.Client(base_url=stack.host.url, timeout=30) as client:
        for seen in order + shuffled:
            headers = {k: v for k, v in seen.headers.items() if k not in _SKIP_HEADERS}
            response = client.post(seen.path, content=seen.body, headers=headers)
            assert response.status_code < 300, (seen.path.split("?")[0], response.status_code, response.text[:300])

    expected = {a: (f"{a} v{VERSIONS}", "+1 555 0000"), b: (f"{b} v{VERSIONS}", "+1 555 0000"),
                c: (f"{c} v0", "+1 555 3002"), d: (f"{d} v1", "+1 555 4000")}

    def missing(records: tuple[str, ...] = (a, b, c, d)) -> list[str]:
        fo, dv, _ = both_sides(stack, prefix)
        return [k for k in records if fo.get(k) != expected[k] or dv.get(k) != expected[k]]

    try:
        eventually(lambda: not missing(), timeout=180, what="the newest version of every record on both sides")
    except AssertionError:
        fo, dv, _ = both_sides(stack, prefix)
        raise AssertionError(f"not at the newest version: {missing()}; F&O {fo}; Dataverse {dv}") from None
    converged = time.monotonic() - started
    wait_quiet(stack)

    _, _, extra_rows = both_sides(stack, prefix)
    fno_writes, dv_writes = record_writes(stack)
    ids = {row["accountnumber"]: row["accountid"] for row in dv_rows(stack, prefix)}
    engine = {  # the engine's writes: all writes on the side the test did not write the record on
        a: dv_writes.get(ids[a], 0), d: dv_writes.get(ids[d], 0),
        b: fno_writes.get(fno_address(b), 0), c: fno_writes.get(fno_address(c), 0)}
    echoes = {  # and on the side it did: anything beyond the test's own writes
        a: fno_writes.get(fno_address(a), 0) - test_writes[0].get(fno_address(a), 0),
        d: fno_writes.get(fno_address(d), 0) - test_writes[0].get(fno_address(d), 0),
        b: dv_writes.get(b_id, 0) - test_writes[1].get(b_id, 0),
        c: dv_writes.get(c_id, 0) - test_writes[1].get(c_id, 0)}
    entries = [e for e in stack.activity(map="customers", since=since)
               if e["key"].startswith(f"USMF|{prefix}") or e["key"].removeprefix("dataverse:").lower() in (b_id, c_id)]
    applied = Counter(e["event_id"] for e in entries if e["outcome"] == "applied")
    applied_twice = {event: n for event, n in applied.items() if n > 1}
    over = {k: (engine[k], per_record[k]) for k in engine if engine[k] > per_record[k]}
    errors = [e for e in stack.errors(status="all") if e["key"].startswith(f"USMF|{prefix}")]
    record_figures("duplicate and out-of-order deliveries", changes=2 * VERSIONS + 5, deliveries_held=len(held),
                   deliveries_posted=len(order) + len(shuffled), lost=len(missing()),
                   doubled=len(applied_twice) + sum(e - p for e, p in over.values()) + extra_rows,
                   converged_s=round(converged, 1), engine_writes=engine, held_per_record=per_record,
                   echo_writes=echoes, applied_events=len(applied), errors=len(errors))
    assert applied_twice == {}, applied_twice
    assert over == {}, f"records written more often than versions sent (writes, versions): {over}"
    assert extra_rows == 0
    assert all(n == 0 for n in echoes.values()), echoes
    assert errors == []
