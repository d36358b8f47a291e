"""Dataverse webhook bodies -> change events: captured simulator bodies and the reference's examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.events.dataverse import parse_webhook
from core.events.errors import PayloadError
from core.events.model import ChangeEvent, lookup_ref

PAYLOADS = Path(__file__).parent / "payloads"
ACCOUNT = "acf5b83d-06a1-4ef3-b78f-c2eca283e6ad"
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"


def payload(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def headers(name: str) -> dict[str, str]:
    path = PAYLOADS / f"{name}.headers.json"
    return json.loads(path.read_text()) if path.exists() else {}


def body_with(name: str, change: Any) -> bytes:
    data = json.loads(payload(name))
    change(data)
    return json.dumps(data).encode()


def error_of(body: bytes, hdrs: dict[str, str] | None = None) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_webhook(body, hdrs or {})
    return caught.value


# -- the reference's examples ----------------------------------------------------------------------------


def test_reference_update_overlays_target_on_post_image() -> None:
    event = parse_webhook(payload("ref_1_7_1_update"), {})
    assert event.source == "dataverse" and event.entity == "account" and event.operation == "update"
    assert event.record_id == ACCOUNT
    assert event.event_id == "dv:4af10637-4ea2-e711-8122-000d3aa2331c"
    assert event.values["accountnumber"] == "US-001"  # only in the post image
    assert event.values["name"] == "Contoso Retail (US)"
    assert event.values["creditlimit"] == Decimal("25000.0")
    assert event.values["customertypecode"] == 3  # only in the Target
    assert event.values["msdyn_company"] == lookup_ref("cdm_company", "840b0b8f-ace5-4ae2-81fe-9f5176a7baaa")
    assert event.values["modifiedon"] == datetime(2024, 8, 26, 7, 43, 16, tzinfo=UTC)
    assert event.values["modifiedonbehalfby"] is None
    assert event.partial is False
    assert event.pre == {"accountid": ACCOUNT, "accountnumber": "US-001", "name": "Contoso Retail",
                         "creditlimit": Decimal("10000.0")}
    assert event.version == "14563901"
    assert event.occurred_at == datetime(2024, 8, 26, 7, 43, 17, tzinfo=UTC)
    assert event.initiated_by == "d2069f4e-58c0-4db3-9a3c-ddada13285f2"
    assert event.correlation_id == "b374239d-4233-41a9-8b17-a86cb4f737b5"


def test_reference_delete_takes_pre_image_and_its_version() -> None:
    event = parse_webhook(payload("ref_1_7_2_delete"), {})
    assert event.operation == "delete" and event.values == {}
    assert event.pre is not None and event.pre["accountnumber"] == "US-001"
    assert event.version is None  # the pre image has no RowVersion in the example
    assert event.initiated_by == "75c2dd85-e89e-e711-8122-000d3aa2331c"  # no AAD object id: the systemuser


def test_reference_trimmed_update_becomes_refetch() -> None:
    event = parse_webhook(payload("ref_1_7_3_trimmed"), {"x-ms-dynamics-msg-size-exceeded": "true"})
    assert event.operation == "refetch" and event.partial is True
    assert event.values == {} and event.pre is None and event.record_id == ACCOUNT


def test_trimmed_detected_without_header_when_inputs_absent_or_null() -> None:
    assert parse_webhook(payload("ref_1_7_3_trimmed"), {}).operation == "refetch"
    null_inputs = body_with("ref_1_7_3_trimmed", lambda d: d.update(InputParameters=None))
    assert parse_webhook(null_inputs, {}).operation == "refetch"


def test_trimmed_delete_stays_delete_with_only_the_id() -> None:
    body = body_with("ref_1_7_2_delete", lambda d: [d.pop(k) for k in ("InputParameters", "PreEntityImages")])
    event = parse_webhook(body, {"X-MS-Dynamics-Msg-Size-Exceeded": ""})
    assert event.operation == "delete" and event.record_id == ACCOUNT and event.pre is None


# -- bodies captured from the Dataverse simulator ---------------------------------------------------------


def test_captured_create_keeps_ten_decimal_money_exact() -> None:
    event = parse_webhook(payload("dv_account_create"), headers("dv_account_create"))
    assert event.operation == "create" and event.partial is False
    assert event.values["creditlimit"] == Decimal("1234.5678901234")
    assert event.values["accountnumber"] == "US-900"
    assert event.version is not None
    # the wire form keeps every digit
    assert json.loads(event.to_json())["values"]["creditlimit"] == "1234.5678901234"
    assert ChangeEvent.from_json(event.to_json()).to_json() == event.to_json()


def test_captured_update_and_delete() -> None:
    update = parse_webhook(payload("dv_account_update"), headers("dv_account_update"))
    assert update.values["creditlimit"] == Decimal("99999.0000000001")
    assert update.pre is not None and update.pre["name"] == "Capture Ltd"
    assert update.values["name"] == "Capture Ltd (US)"
    delete = parse_webhook(payload("dv_account_delete"), headers("dv_account_delete"))
    assert delete.operation == "delete" and delete.pre is not None
    assert delete.pre["accountnumber"] == "US-900" and delete.version is not None
    assert delete.record_id == update.record_id


def test_async_primary_name_image_alone_leaves_the_event_partial() -> None:
    def only_primary_name(d: dict[str, Any]) -> None:
        d["PostEntityImages"] = [{"key": "AsynchronousStepPrimaryName", "value": {
            "Attributes": [{"key": "name", "value": "Contoso"}, {"key": "accountid", "value": ACCOUNT}],
            "Id": ACCOUNT, "LogicalName": "account", "RowVersion": None}}]

    event = parse_webhook(body_with("ref_1_7_1_update", only_primary_name), {})
    assert event.partial is True and event.values["name"] == "Contoso Retail (US)"


def test_images_of_several_aliases_are_merged() -> None:
    def two_images(d: dict[str, Any]) -> None:
        d["PreEntityImages"].append({"key": "Keys", "value": {"Attributes": [{"key": "telephone1", "value": "555"}]}})

    event = parse_webhook(body_with("ref_1_7_1_update", two_images), {})
    assert event.pre is not None and event.pre["telephone1"] == "555" and event.pre["name"] == "Contoso Retail"


def test_typed_values() -> None:
    def typed(d: dict[str, Any]) -> None:
        d["InputParameters"][0]["value"]["Attributes"] += [
            {"key": "multi", "value": [{"__type": f"OptionSetValue:{CONTRACTS}", "Value": 1},
                                       {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 3}]},
            {"key": "rate", "value": "@rate@"},
            {"key": "count", "value": 7},
            {"key": "flag", "value": True},
            {"key": "when", "value": "/Date(-1000-0700)/"},
        ]

    body = body_with("ref_1_7_1_update", typed).replace(b'"@rate@"', b"0.1234567890")
    values = parse_webhook(body, {}).values
    assert values["multi"] == [1, 3]
    assert isinstance(values["rate"], Decimal) and str(values["rate"]) == "0.1234567890"
    assert values["count"] == 7 and values["flag"] is True
    assert values["when"] == datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_event_id_fallbacks() -> None:
    body = body_with("ref_1_7_1_update", lambda d: d.pop("OperationId"))
    assert parse_webhook(body, {"x-request-id": "abc-1"}).event_id == "dv:abc-1"
    hashed = parse_webhook(body, {}).event_id
    assert hashed.startswith("dv:sha256:") and hashed == parse_webhook(body, {}).event_id


def test_upper_case_and_braced_ids_are_normalised() -> None:
    body = body_with("ref_1_7_1_update", lambda d: d.update(PrimaryEntityId="{" + ACCOUNT.upper() + "}"))
    assert parse_webhook(body, {}).record_id == ACCOUNT


# -- bad input names the field ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(MessageName="Assign"), "MessageName"),
        (lambda d: d.pop("MessageName"), "MessageName"),
        (lambda d: d.update(PrimaryEntityId="not-a-guid"), "PrimaryEntityId"),
        (lambda d: d.update(PrimaryEntityName=5), "PrimaryEntityName"),
        (lambda d: d.update(InputParameters={"Target": {}}), "InputParameters"),
        (lambda d: d.update(InputParameters=[{"key": "Other", "value": 1}]), "InputParameters"),
        (lambda d: d["InputParameters"][0]["value"].update(Attributes="name=x"), "InputParameters[0].value.Attributes"),
        # an unknown __type is carried as a marker now (test_hostile.py), not refused
        (lambda d: d["InputParameters"][0]["value"]["Attributes"][2]["value"].update(Value="lots"),
         "InputParameters[0].value.Attributes[2].value.Value"),
        (lambda d: d["InputParameters"][0]["value"]["Attributes"][4]["value"].update(Id="x"),
         "InputParameters[0].value.Attributes[4].value.Id"),
        (lambda d: d["PostEntityImages"][0].update(value=[1]), "PostEntityImages[0].value"),
        (lambda d: d.update(OperationCreatedOn="yesterday"), "OperationCreatedOn"),
        (lambda d: d["InputParameters"][0].update(value={"__type": "EntityReference:x", "Id": ACCOUNT,
                                                          "LogicalName": "account"}), "InputParameters[0].value"),
    ],
)
def test_bad_update_names_the_field(change: Any, field: str) -> None:
    assert error_of(body_with("ref_1_7_1_update", change)).field == field


def test_delete_target_must_be_a_reference() -> None:
    def entity_target(d: dict[str, Any]) -> None:
        d["InputParameters"][0]["value"] = {"__type": f"Entity:{CONTRACTS}", "Attributes": []}

    assert error_of(body_with("ref_1_7_2_delete", entity_target)).field == "InputParameters[0].value"


@pytest.mark.parametrize(("body", "field"), [(b"", "body"), (b"{not json", "body"), (b"[1, 2]", "$"),
                                             (b"\xff\xfe", "body")])
def test_unreadable_bodies(body: bytes, field: str) -> None:
    assert error_of(body).field == field


def test_floats_never_appear() -> None:
    event = parse_webhook(payload("ref_1_7_1_update"), {})
    assert not any(isinstance(v, float) for v in event.values.values())
