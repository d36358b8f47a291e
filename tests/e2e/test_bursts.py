"""A burst from both sides at once through the whole local stack: 1,000 F&O changes and 1,000 Dataverse
changes over the same 300 customers, written as mass updates do (`$batch` of 100). Both sides must end
equal (customers: latest wins, so a change that lost is written back over), with nothing in the error
log, no record written by the engine more often than it was changed, and no echo loop afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from core.connectors.batch import BatchOp
from tests.e2e.conftest import (
    Stack,
    accounts_with_prefix,
    customers_with_prefix,
    drain,
    dv_stats,
    eventually,
    fno_stats,
    reset_stats,
    send_batch,
)

RECORDS = 300
CHANGES = 1000
PER_BATCH = 100


def test_a_burst_from_both_sides_ends_equal_with_no_error_and_no_echo_loop(stack: Stack) -> None:
    prefix = f"B{uuid.uuid4().hex[:5].upper()}-"
    accounts = [f"{prefix}{n:03d}" for n in range(RECORDS)]
    creates = [BatchOp("POST", "CustomersV3", {
        "dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": f"Burst {account}",
        "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
        "PaymentTerms": "Net30", "PrimaryContactPhone": "+1 555 0000"}) for account in accounts]
    for start in range(0, RECORDS, PER_BATCH):
        send_batch(stack.fo, creates[start:start + PER_BATCH], each_write_atomic=True)

    def synced_rows() -> dict[str, dict[str, Any]]:
        return accounts_with_prefix(stack, prefix)

    rows = eventually(lambda: (found := synced_rows()) and len(found) == RECORDS and found, timeout=240,
                      what=f"the {RECORDS} new customers reaching Dataverse")
    drain(stack)
    reset_stats(stack)

    fno_changes: Counter[str] = Counter()
    dv_changes: Counter[str] = Counter()
    fno_ops, dv_ops = [], []
    for n in range(CHANGES):
        account = accounts[n % RECORDS]
        fno_changes[account] += 1
        address = f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')?cross-company=true"
        fno_ops.append(BatchOp("PATCH", address, {"OrganizationName": f"F&O {n} {account}"}))
        account = accounts[(n * 7) % RECORDS]  # another order: the two sides meet on records at other times
        dv_changes[account] += 1
        dv_ops.append(BatchOp("PATCH", f"accounts({rows[account]['accountid']})", {"telephone1": f"+1 555 {n:04d}"}))

    def write(client: httpx.Client, ops: list[BatchOp], atomic: bool) -> None:
        for start in range(0, len(ops), PER_BATCH):
            send_batch(client, ops[start:start + PER_BATCH], each_write_atomic=atomic)

    writers = [threading.Thread(target=write, args=(stack.fo, fno_ops, True)),
               threading.Thread(target=write, args=(stack.dv, dv_ops, False))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    def fno_rows() -> dict[str, dict[str, Any]]:
        return customers_with_prefix(stack, prefix)

    def differences() -> list[str]:
        dv, fo = synced_rows(), fno_rows()
        return [account for account in accounts
                if (fo[account]["OrganizationName"], fo[account]["PrimaryContactPhone"])
                != (dv[account]["name"], dv[account]["telephone1"])]

    def equal_and_quiet() -> bool:
        drain(stack)
        if differences():
            return False
        before = (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"])
        time.sleep(3)
        drain(stack)
        after = (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"])
        return before == after and not differences()

    try:
        eventually(equal_and_quiet, timeout=420, what="both sides agreeing on every burst record")
    except AssertionError:
        raise AssertionError(f"records still differing: {differences()[:10]}") from None
    # every F&O rename that no later Dataverse change overtook is on both sides: nothing was lost
    final = fno_rows()
    assert sum(1 for account in accounts if final[account]["OrganizationName"].startswith("F&O ")) > RECORDS * 0.9
    errors = [e for e in stack.errors(map="customers", status="all") if e["key"].startswith(f"USMF|{prefix}")]
    assert errors == []

    # Writes: the test's own, plus the engine's; the engine never writes a record more often than it changed.
    fno_writes = fno_stats(stack)["record_writes"].get("CustomersV3", {})
    dv_writes = dv_stats(stack)["record_writes"].get("accounts", {})
    engine_total = 0
    for account in accounts:
        on_fno = fno_writes.get(f"dataAreaId='usmf',CustomerAccount='{account}'", 0)
        on_dv = dv_writes.get(rows[account]["accountid"], 0)
        engine = (on_fno - fno_changes[account]) + (on_dv - dv_changes[account])
        changes = fno_changes[account] + dv_changes[account]
        assert engine <= changes, (account, on_fno, on_dv, fno_changes[account], dv_changes[account])
        engine_total += max(engine, 0)
    assert engine_total <= 2 * CHANGES
    # and once both sides agree, nothing more is written: no echo loop
    reset_stats(stack)
    time.sleep(5)
    drain(stack)
    assert (dv_stats(stack)["writes"]["total"], fno_stats(stack)["writes"]["total"]) == (0, 0)
