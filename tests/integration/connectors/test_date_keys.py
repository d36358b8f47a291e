"""A date as a key part over HTTP: the connectors render it (F&O: a bare Edm.DateTimeOffset at 12:00 UTC, Dataverse:
a bare Edm.Date for a date-only column) and the simulators parse it as their services do. Two rates of one currency
pair with different start dates are two records on each side, each addressed by its own date; a date written as a
quoted string, in the other side's form or impossible is a 400 naming the key field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import httpx
import pytest

from core.connectors import DataverseClient, FnoClient, ValidationFailed
from core.connectors.errors import ConnectorError
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.fno import FnoSimulator

pytestmark = pytest.mark.integration
RATES = "ExchangeRatesCDSEntity"
DV_RATES = "msdyn_currencyexchangerates"
JAN, JUL = date(2026, 1, 1), date(2026, 7, 1)


def fno_key(rate_type: str, valid_from: date) -> dict[str, object]:
    return {"ExchangeRateTypeName": rate_type, "FromCurrencyCode": "EUR", "ToCurrencyCode": "USD",
            "ValidFrom": valid_from}


def dv_key(rate_type: str, valid_from: date) -> dict[str, object]:
    return {"msdyn_exchangeratetypename": rate_type, "msdyn_fromcurrencycode": "EUR",
            "msdyn_tocurrencycode": "USD", "msdyn_validfrom": valid_from}


async def test_fno_addresses_each_dated_rate_by_its_start_date(fo: FnoClient, unique: str) -> None:
    rate_type = f"D{unique}"
    for valid_from, rate in ((JAN, "1.0812345678"), (JUL, "1.0923456789")):
        await fo.create(RATES, {**fno_key(rate_type, valid_from), "ValidFrom": valid_from.isoformat(),
                                "Rate": Decimal(rate)})
    january = await fo.get(RATES, fno_key(rate_type, JAN))
    july = await fo.get(RATES, fno_key(rate_type, JUL))
    assert january is not None and july is not None
    assert (january["Rate"], july["Rate"]) == (Decimal("1.0812345678"), Decimal("1.0923456789"))
    assert january["ValidFrom"] == "2026-01-01T12:00:00Z" and july["ValidFrom"] == "2026-07-01T12:00:00Z"

    await fo.update(RATES, fno_key(rate_type, JUL), {"Rate": Decimal("1.1000000001")})
    assert (await fo.get(RATES, fno_key(rate_type, JUL)) or {})["Rate"] == Decimal("1.1000000001")
    assert (await fo.get(RATES, fno_key(rate_type, JAN)) or {})["Rate"] == Decimal("1.0812345678")
    assert await fo.get(RATES, fno_key(rate_type, date(2026, 2, 1))) is None
    assert await fo.delete(RATES, fno_key(rate_type, JAN)) and await fo.delete(RATES, fno_key(rate_type, JUL))


@pytest.mark.parametrize("literal", ["'2026-01-01'", "2026-01-01", "2026-13-01T12:00:00Z"])
def test_fno_refuses_a_date_key_that_is_not_a_datetimeoffset(fno: FnoSimulator, literal: str) -> None:
    url = (f"{fno.data_url}{RATES}(ExchangeRateTypeName='Default',FromCurrencyCode='USD',ToCurrencyCode='EUR',"
           f"ValidFrom={literal})?cross-company=true")
    response = httpx.get(url, headers=fno.headers(), timeout=10)
    assert response.status_code == 400, response.text
    assert "ValidFrom" in response.text


def test_fno_finds_the_seeded_dated_history_by_start_date(fno: FnoSimulator) -> None:
    base = f"{fno.data_url}{RATES}(ExchangeRateTypeName='Default',FromCurrencyCode='USD',ToCurrencyCode='EUR',"
    rates = []
    for literal in ("2026-01-01T12:00:00Z", "2026-07-01T00:00:00Z"):
        response = httpx.get(f"{base}ValidFrom={literal})?cross-company=true", headers=fno.headers(), timeout=10)
        assert response.status_code == 200, response.text
        rates.append(response.json()["Rate"])
    assert rates[0] != rates[1]


async def test_dataverse_upserts_one_row_per_start_date(dv: DataverseClient, unique: str) -> None:
    rate_type = f"D{unique}"
    first = await dv.upsert(DV_RATES, dv_key(rate_type, JAN), {"msdyn_exchangerate": Decimal("0.9212345678")})
    second = await dv.upsert(DV_RATES, dv_key(rate_type, JUL), {"msdyn_exchangerate": Decimal("0.9301234567")})
    assert first.created and second.created and first.id != second.id
    again = await dv.upsert(DV_RATES, dv_key(rate_type, JUL), {"msdyn_exchangerate": Decimal("0.9400000001")})
    assert not again.created and again.id == second.id
    july = await dv.get(DV_RATES, key=dv_key(rate_type, JUL))
    assert july is not None and july["msdyn_validfrom"] == "2026-07-01"
    assert july["msdyn_exchangerate"] == Decimal("0.9400000001")
    assert await dv.delete(DV_RATES, key=dv_key(rate_type, JAN))
    assert await dv.get(DV_RATES, key=dv_key(rate_type, JAN)) is None
    assert await dv.delete(DV_RATES, second.id)


@pytest.mark.parametrize("literal", ["'2026-01-01'", "2026-01-01T00:00:00Z", "2026-02-30"])
def test_dataverse_refuses_a_date_only_key_that_is_not_an_edm_date(dataverse: DataverseSim, literal: str) -> None:
    url = (f"{dataverse.base_url}{DV_RATES}(msdyn_exchangeratetypename='Default',msdyn_fromcurrencycode='USD',"
           f"msdyn_tocurrencycode='EUR',msdyn_validfrom={literal})")
    response = httpx.get(url, headers=dataverse.headers(), timeout=10)
    assert response.status_code == 400, response.text
    assert "msdyn_validfrom" in response.text


async def test_a_date_sent_as_text_is_refused_by_dataverse_with_the_column(dv: DataverseClient) -> None:
    # The connectors render what they are given: a date as text is a quoted string, which the service refuses.
    with pytest.raises((ValidationFailed, ConnectorError), match="msdyn_validfrom"):
        await dv.get(DV_RATES, key={**dv_key("Default", JAN), "msdyn_validfrom": "2026-01-01"})
