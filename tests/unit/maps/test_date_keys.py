"""A date (or datetime) as a key part: one canonical key and one link hash whichever side and wire format it came
from, typed for the connectors (never quoted as a string), and the connectors' literals for both services."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.connectors.dataverse import key_filter as dv_key_filter
from core.connectors.dataverse import key_segment as dv_key_segment
from core.connectors.fno import key_literal as fno_key_literal
from core.connectors.fno import key_segment as fno_key_segment
from core.maps import MapValueError, TableMap, record_key
from core.maps.hashing import stable_hash
from core.maps.keys import typed_key
from core.maps.loader import load_map_file
from core.maps.values import coerce
from devstack.dataverse.resources import _date_key_value, parse_key
from devstack.dataverse.schema import load_schema as load_dv_schema
from devstack.fno.schema import load_schema as load_fno_schema
from devstack.fno.service import Service

MAPS = Path(__file__).parents[3] / "maps"
# 2026-01-01 as each side may write it: F&O OData (12:00 UTC), an F&O business event (/Date(ms)/ at midnight UTC),
# an offset written where the day began, a data event's /Date(ms+hhmm)/, and Dataverse's Edm.Date.
JANUARY_FIRST = ["2026-01-01T12:00:00Z", "/Date(1767225600000)/", "2026-01-01T00:00:00+02:00",
                 "/Date(1767268800000+0200)/", "2026-01-01", date(2026, 1, 1)]


@pytest.fixture(scope="module")
def rates() -> TableMap:
    loaded, problems = load_map_file(MAPS / "exchange-rates.json")
    assert problems == [] and loaded is not None
    return loaded.map


def fno_rate(valid_from: Any) -> dict[str, Any]:
    return {"ExchangeRateTypeName": "Default", "FromCurrencyCode": "EUR", "ToCurrencyCode": "USD",
            "ValidFrom": valid_from}


def dv_rate(valid_from: Any) -> dict[str, Any]:
    return {"msdyn_exchangeratetypename": "Default", "msdyn_fromcurrencycode": "EUR",
            "msdyn_tocurrencycode": "USD", "msdyn_validfrom": valid_from}


@pytest.mark.parametrize("written", JANUARY_FIRST)
def test_a_date_key_is_one_canonical_key_from_either_side_and_format(rates: TableMap, written: Any) -> None:
    expected = ("Default", "EUR", "USD", "2026-01-01")
    assert record_key(rates, "fno", fno_rate(written)) == expected
    assert record_key(rates, "dataverse", dv_rate(written)) == expected


def test_another_start_date_is_another_key(rates: TableMap) -> None:
    july = record_key(rates, "fno", fno_rate("2026-07-01T12:00:00Z"))
    assert july != record_key(rates, "fno", fno_rate("2026-01-01"))


def test_a_datetime_key_part_is_held_in_utc() -> None:
    from core.maps.keys import key_text
    moments = [coerce("datetime", text) for text in
               ("2026-01-01T09:30:00Z", "2026-01-01T11:30:00+02:00", "/Date(1767259800000)/")]
    assert {key_text(m) for m in moments} == {"2026-01-01T09:30:00Z"}
    assert key_text(datetime(2026, 1, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5)))) == "2026-01-01T09:30:00Z"


def test_the_link_hash_of_a_date_does_not_depend_on_its_wire_format() -> None:
    hashes = {stable_hash({"ValidFrom": coerce("date", written), "Rate": Decimal("1.10")}) for written in JANUARY_FIRST}
    assert len(hashes) == 1
    assert stable_hash({"ValidFrom": date(2026, 1, 1)}) != stable_hash({"ValidFrom": "2026-01-01"})


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-01-01T09:30:00Z", "/Date(abc)/", "soon"])
def test_a_bad_date_key_is_refused_naming_the_key_field(rates: TableMap, bad: str) -> None:
    with pytest.raises(MapValueError, match="key field 'ValidFrom'"):
        record_key(rates, "fno", fno_rate(bad))
    with pytest.raises(MapValueError, match="key field 'msdyn_validfrom'"):
        typed_key(rates, "dataverse", dv_rate(bad))


def test_typed_key_gives_the_connectors_a_date_not_text(rates: TableMap) -> None:
    # A canonical key, a link's stored key and a wire row all hold the date as text.
    for written in ("2026-01-01", "2026-01-01T12:00:00Z"):
        assert typed_key(rates, "fno", fno_rate(written))["ValidFrom"] == date(2026, 1, 1)
        assert typed_key(rates, "dataverse", dv_rate(written))["msdyn_validfrom"] == date(2026, 1, 1)
    company = {"_msdyn_company_value": "5c5d7a52-0000-0000-0000-000000000001"}
    assert typed_key(rates, "dataverse", company) == company  # not a mapped field: unchanged


def test_fno_renders_a_date_key_as_a_bare_datetimeoffset_at_noon_utc() -> None:
    segment = fno_key_segment(fno_rate(date(2026, 1, 1)))
    assert segment == ("ExchangeRateTypeName='Default',FromCurrencyCode='EUR',ToCurrencyCode='USD',"
                       "ValidFrom=2026-01-01T12:00:00Z")
    moment = datetime(2026, 1, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    assert fno_key_segment({"Stamp": moment}) == "Stamp=2026-01-01T09:30:00Z"
    assert fno_key_literal("ValidFrom", date(2026, 1, 1)) == "2026-01-01T12:00:00Z"
    assert fno_key_segment({"Id": "a/b?c"}) == "Id='a%2Fb%3Fc'"  # strings still quoted and path-safe


def test_dataverse_renders_a_date_key_as_a_bare_edm_date() -> None:
    segment = dv_key_segment(dv_rate(date(2026, 1, 1)))
    assert segment == ("msdyn_exchangeratetypename='Default',msdyn_fromcurrencycode='EUR',"
                       "msdyn_tocurrencycode='USD',msdyn_validfrom=2026-01-01")
    assert dv_key_segment({"new_stamp": datetime(2026, 1, 1, 9, 30, tzinfo=UTC)}) == "new_stamp=2026-01-01T09:30:00Z"
    assert dv_key_filter({"msdyn_validfrom": date(2026, 1, 1), "msdyn_name": "A'B"}) == \
        "msdyn_validfrom eq 2026-01-01 and msdyn_name eq 'A''B'"


@pytest.mark.parametrize("render", [fno_key_segment, dv_key_segment])
def test_a_key_value_without_a_zone_or_of_another_type_is_refused_naming_the_part(render: Any) -> None:
    with pytest.raises(ValueError, match=r"'ValidFrom'.*no time zone"):
        render({"ValidFrom": datetime(2026, 1, 1, 12)})
    with pytest.raises(ValueError, match=r"'ValidFrom'.*unsupported key value type float"):
        render({"ValidFrom": 1.5})
    with pytest.raises(ValueError, match=r"'ValidFrom'.*cannot be null"):
        render({"ValidFrom": None})


def test_fno_round_trip_core_renders_what_the_simulator_parses() -> None:
    schema = load_fno_schema()
    entity = schema.entities["ExchangeRatesCDSEntity"]
    service = Service.__new__(Service)
    service.schema = schema
    key = fno_rate(date(2026, 7, 1))
    assert service.parse_key(entity, fno_key_segment(key)) == key


def test_dataverse_round_trip_core_renders_what_the_simulator_parses() -> None:
    column = load_dv_schema().table("msdyn_currencyexchangerate").columns["msdyn_validfrom"]
    parsed = parse_key(dv_key_segment(dv_rate(date(2026, 7, 1))))
    assert {k: v for k, v in parsed.items() if k != "msdyn_validfrom"} == {
        k: v for k, v in dv_rate(None).items() if k != "msdyn_validfrom"}
    assert _date_key_value(column, parsed["msdyn_validfrom"]) == "2026-07-01" == column.coerce("2026-07-01")


def test_the_shipped_exchange_rate_map_keys_on_the_start_date_both_sides(rates: TableMap) -> None:
    assert rates.key_pairs()[-1] == ("ValidFrom", "msdyn_validfrom")
    assert {lk.dataverse: lk.fno for lk in rates.lookups} == {
        "msdyn_fromcurrency": {"FromCurrencyCode": "CurrencyCode"},
        "msdyn_tocurrency": {"ToCurrencyCode": "CurrencyCode"}}
    assert json.loads((MAPS / "exchange-rates.json").read_text())["enabled"] is False


@pytest.mark.parametrize("text", ["/Date(1767225600000+9999)/", "/Date(-62135596800000-0100)/",
                                  "/Date(253402300799999+0100)/"])
def test_an_offset_out_of_python_range_keeps_the_instant(text: str) -> None:
    """The ms of /Date(ms+hhmm)/ are UTC whatever the offset says (the fuzzer sends +9999, and year 1 or 9999 moved
    out of range by the offset): the instant stands, in UTC, instead of an error the caller cannot name."""
    from core.events.dataverse import wcf_date
    from core.maps.values import wcf_moment

    moment = wcf_moment(text)
    assert moment is not None and moment.utcoffset() == timedelta(0)
    assert wcf_date(text) == moment
    ms = int(text[len("/Date("):].split(")")[0][:-5])  # the digits before the offset's sign and 4 digits
    assert moment == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def test_a_date_beyond_year_9999_is_refused() -> None:
    with pytest.raises(MapValueError, match="out of range"):
        coerce("datetime", "/Date(999999999999999999)/")
