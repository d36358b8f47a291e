"""Integration keys, their RowKey-safe encoding, and the dependency order with cycles."""

import json
from decimal import Decimal

import pytest

from core.maps import MapValueError, decode_key, encode_key, evaluate, plan_sync, record_key
from core.maps.keys import decimal_text
from core.maps.loader import load_map_file


def test_both_sides_give_the_same_key(shipped):
    customers = shipped["customers"]
    fno = record_key(customers, "fno", {"dataAreaId": "usmf", "CustomerAccount": "US-001"})
    dataverse = record_key(customers, "dataverse", {"msdyn_company": {"cdm_companycode": "USMF"},
                                                    "accountnumber": "US-001"})
    dotted = record_key(customers, "dataverse", {"msdyn_company.cdm_companycode": "usmf", "accountnumber": "US-001"})
    assert fno == dataverse == dotted == ("USMF", "US-001")
    assert record_key(shipped["currencies"], "fno", {"CurrencyCode": "USD"}) == ("USD",)


def test_key_behind_an_invertible_transform_is_spelled_the_f_and_o_way(tmp_path):
    data = {"name": "kinds", "version": "1", "primary": "fno",
            "fno": {"entity_set": "Kinds", "key": ["Kind"]},
            "dataverse": {"table": "new_kind", "entity_set": "new_kinds", "primary_id": "new_kindid",
                          "key": ["new_kind"]},
            "fields": [{"fno": "Kind", "dataverse": "new_kind", "direction": "both", "type": "enum",
                        "transform": [{"type": "value_map", "pairs": [{"fno": "Item", "dataverse": 1}],
                                       "unknown": "fail"}]}]}
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps(data))
    loaded, problems = load_map_file(path)
    assert problems == []
    assert record_key(loaded.map, "dataverse", {"new_kind": 1}) == record_key(loaded.map, "fno", {"Kind": "Item"})
    with pytest.raises(MapValueError, match="key field 'new_kind'"):
        record_key(loaded.map, "dataverse", {"new_kind": 7})


def test_source_filters(shipped):
    customers = shipped["customers"]
    assert evaluate(customers.source_filter("fno"), {"PartyType": "Organization"})
    assert not evaluate(customers.source_filter("dataverse"), {"customertypecode": 1})
    assert shipped["vendors"].source_filter("fno") is None


def test_missing_key_parts_are_named(shipped):
    with pytest.raises(MapValueError, match="no company"):
        record_key(shipped["customers"], "fno", {"CustomerAccount": "US-001"})
    with pytest.raises(MapValueError, match="no value for key field 'accountnumber'"):
        record_key(shipped["customers"], "dataverse", {"msdyn_company": "USMF"})


def test_encoding_is_rowkey_safe_and_reversible():
    parts = ("USMF", "A/B\\C#D?E", "x|y%z", "tab\there\x7f\x85", "")
    encoded = encode_key(parts)
    assert not set(encoded) & set("/\\#?\t\x7f\x85")
    assert decode_key(encoded) == parts
    assert encode_key(("USMF", "US-001")) == "USMF|US-001"  # readable in Storage Explorer
    with pytest.raises(ValueError):
        encode_key(())


def test_decimal_key_text():
    assert decimal_text(Decimal("25000.0000000000")) == "25000"
    assert decimal_text(Decimal("-0.00100")) == "-0.001"
    assert decimal_text(Decimal("1E+3")) == "1000"
    assert decimal_text(Decimal("-0")) == "0"


def test_shipped_order_breaks_the_contact_cycle(shipped):
    plan = shipped.plan()
    order = list(plan.order)
    assert order.index("legal-entities") < order.index("customer-groups") < order.index("customers")
    assert order.index("payment-terms") < order.index("customer-groups")
    assert order.index("currencies") < order.index("vendors")
    assert order.index("customers") < order.index("contacts")  # contacts need their account
    assert [(d.map, d.lookup, d.target) for d in plan.deferred] == [("customers", "primarycontactid", "contacts")]
    assert plan.cycles == (("contacts", "customers"),)
    assert plan.unbreakable == ()
    assert plan.describe()[-1] == f"{len(order) + 1}. patch customers.primarycontactid -> contacts"


def _map(tmp_path, name, lookups):
    data = {
        "name": name, "version": "1", "primary": "fno",
        "fno": {"entity_set": name.title(), "key": ["Id"]},
        "dataverse": {"table": f"new_{name}", "entity_set": f"new_{name}s", "primary_id": f"new_{name}id",
                      "key": ["new_id"]},
        "fields": [{"fno": "Id", "dataverse": "new_id", "direction": "both", "type": "string"}],
        "lookups": [{"dataverse": f"new_{target}id", "map": target, "fno": {f"{target.title()}Id": "Id"},
                     "required": required} for target, required in lookups],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    loaded, problems = load_map_file(path)
    assert problems == []
    return loaded.map


def test_only_the_needed_optional_lookups_are_deferred(tmp_path):
    # a -> b (optional), b -> c (required), c -> a (optional), a -> a (optional, self reference)
    maps = [_map(tmp_path, "a", [("b", False), ("a", False)]), _map(tmp_path, "b", [("c", True)]),
            _map(tmp_path, "c", [("a", False)])]
    plan = plan_sync(maps)
    deferred = {(d.map, d.lookup) for d in plan.deferred}
    assert ("a", "new_aid") in deferred  # a self reference is always patched after
    assert len(deferred) == 2  # one edge of the a-b-c cycle is enough
    assert plan.unbreakable == ()
    assert sorted(plan.order) == ["a", "b", "c"]


def test_required_cycle_is_unbreakable(tmp_path):
    maps = [_map(tmp_path, "a", [("b", True)]), _map(tmp_path, "b", [("a", True)])]
    plan = plan_sync(maps)
    assert plan.unbreakable == (("a", "b"),)
