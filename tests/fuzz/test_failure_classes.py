"""Issue 18's failure classes over HTTP, one case each: before the fix each was a 500 with an empty body (or, for
the 13-byte OptionSetValue, a host that answered nothing for over a minute); now each is a 400 problem+json
naming the field (413 for a body over the limit), and a Dataverse update carrying value types the parser does not
decode in columns no map uses is accepted."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.devhost import RunningHost

PAYLOADS = Path(__file__).parents[1] / "unit" / "events" / "payloads"
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ATTRS = "InputParameters[0].value.Attributes"


def update(change: Any = None, raw: dict[bytes, bytes] | None = None) -> bytes:
    data = json.loads((PAYLOADS / "ref_1_7_1_update.json").read_text())
    if change is not None:
        change(data)
    body = json.dumps(data).encode()
    for old, new in (raw or {}).items():
        body = body.replace(old, new)
    return body


def added(value: Any) -> Any:
    return lambda d: d["InputParameters"][0]["value"]["Attributes"].append({"key": "x", "value": value})


def post(host: RunningHost, route: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{host.url}/api/{route}", content=body, timeout=120,
                      headers={"x-functions-key": host.function_key, "Content-Type": "application/json"})


def test_unknown_value_types_in_unmapped_columns_are_accepted(fuzz_host: RunningHost) -> None:
    party = {"__type": f"Entity:{CONTRACTS}", "LogicalName": "activityparty", "Attributes": []}

    def odd_columns(d: dict[str, Any]) -> None:
        d["InputParameters"][0]["value"]["Attributes"] += [
            {"key": "to", "value": {"__type": f"EntityCollection:{CONTRACTS}", "Entities": [party]}},
            {"key": "refs", "value": [{"__type": f"EntityReference:{CONTRACTS}", "Id": d["PrimaryEntityId"],
                                       "LogicalName": "account"}]},
            {"key": "new", "value": {"__type": "NotKnownYet:x", "Anything": [1, {"a": None}]}}]

    answer = post(fuzz_host, "dataverse/webhook", update(odd_columns))
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1


CLASSES = [
    ("RecursionError", "dataverse/webhook", b"[" * 100_000 + b"]" * 100_000, "body"),
    ("RecursionError", "fno/events", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "body"),
    ("PydanticSerializationError", "dataverse/webhook",
     update(added("@S@"), {b"@S@": rb"\ud800"}), f"{ATTRS}[8].value"),
    ("ValidationError", "dataverse/webhook", update(lambda d: d.update(PrimaryEntityName="@S@"), {b"@S@": rb"\udfff"}),
     "PrimaryEntityName"),
    ("ValueError", "dataverse/webhook", update(added("@N@"), {b'"@N@"': b"9" * 5000}), f"{ATTRS}[8].value"),
    ("TypeError", "dataverse/webhook", update(lambda d: d.update(MessageName=["Update"])), "MessageName"),
    ("OverflowError", "dataverse/webhook", update(lambda d: d.update(OperationCreatedOn="/Date(99999999999999999)/")),
     "OperationCreatedOn"),
    ("OverflowError", "dataverse/webhook", update(added("/Date(-99999999999999)/")), f"{ATTRS}[8].value"),
    ("InvalidOperation", "dataverse/webhook",
     update(added({"__type": f"Money:{CONTRACTS}", "Value": "@N@"}), {b'"@N@"': b"1E+99999999999999999999"}),
     f"{ATTRS}[8].value.Value"),
    ("InvalidOperation", "fno/events", b'[{"ControlNumber": -1e-99999999999999999999}]', "[0].ControlNumber"),
    ("a stalled host", "dataverse/webhook",
     update(added({"__type": f"OptionSetValue:{CONTRACTS}", "Value": "@N@"}), {b'"@N@"': b"1E+2147483648"}),
     f"{ATTRS}[8].value.Value"),
]


@pytest.mark.parametrize(("was", "route", "body", "field"), CLASSES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CLASSES)])
def test_each_failure_class_is_a_400_naming_the_field(fuzz_host: RunningHost, was: str, route: str, body: bytes,
                                                       field: str) -> None:
    answer = post(fuzz_host, route, body)
    assert answer.status_code == 400, (was, answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["field"] == field, answer.json()


def test_fno_events_name_the_field_of_the_item(fuzz_host: RunningHost) -> None:
    event = json.loads((PAYLOADS / "fno_business_create.json").read_text())
    body = json.dumps([event, {**event, "ChangeType": {"a": 1}}]).encode()
    answer = post(fuzz_host, "fno/events", body)
    assert answer.status_code == 400 and answer.json()["field"] == "[1].ChangeType", answer.text


def test_a_body_over_the_limit_is_413_naming_the_body(fuzz_host: RunningHost) -> None:
    for route in ("dataverse/webhook", "fno/events"):
        answer = post(fuzz_host, route, b'{"a": "' + b"x" * (1024 * 1024) + b'"}')
        assert answer.status_code == 413 and answer.json()["field"] == "body", answer.text


def test_the_13_byte_optionset_value_does_not_stall_the_host(fuzz_host: RunningHost) -> None:
    """The value that kept the host from answering anything for over a minute: now refused at once, and health
    answers while a stream of them (and of 1 MiB bodies of tiny values, parsed off the loop) is being sent."""
    hostile = update(added({"__type": f"OptionSetValue:{CONTRACTS}", "Value": "@N@"}), {b'"@N@"': b"1E+2147483648"})
    heavy = b"[" + b"0," * (512 * 1024 - 2) + b"0]"
    answers: list[int] = []

    def send() -> None:
        for _ in range(10):
            answers.append(post(fuzz_host, "dataverse/webhook", hostile).status_code)
            answers.append(post(fuzz_host, "fno/events", heavy).status_code)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    started = time.monotonic()
    health = httpx.get(f"{fuzz_host.url}/api/health", timeout=60)
    health_seconds = time.monotonic() - started
    for sender in senders:
        sender.join()
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert health_seconds < 30, health_seconds  # a stalled loop answered after more than a minute
    assert answers == [400] * 80, answers
    answer = post(fuzz_host, "dataverse/webhook", hostile)
    assert answer.json()["field"] == f"{ATTRS}[8].value.Value", answer.text
