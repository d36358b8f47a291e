"""Reads of records by key in one query (`(dataAreaId eq 'usmf' and CustomerAccount eq 'X') or ...`, as initial
sync reads a page's targets) are answered from the key index, and answer exactly what the full scan does: every
response is compared with the same filter wrapped in `not (not (...))`, which means the same but takes the
scan. Whether a filter takes the key index is checked on the parser (query.key_filter)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.fno.query import key_filter
from devstack.fno.schema import load_schema
from tests.fixtures.fno import FnoSimulator
from tests.fixtures.odata import all_pages

pytestmark = pytest.mark.integration
SCHEMA = load_schema()
CUSTOMERS = SCHEMA.entities["CustomersV3"]
PREFIX = f"KQ{uuid.uuid4().hex[:5].upper()}-"
SELECT = "dataAreaId,CustomerAccount,OrganizationName,CreditLimit"


def account(i: int) -> str:
    return f"{PREFIX}{i:04d}"


@pytest.fixture(scope="module", autouse=True)
def customers(fno: FnoSimulator) -> Iterator[None]:
    """Twelve customers: 0-7 in usmf (the callers' default company), 4-11 in demf (4-7 in both); removed after."""
    rows = [{"dataAreaId": company, "CustomerAccount": account(i), "OrganizationName": f"Key {i} {company}",
             "PartyType": "Organization", "CustomerGroupId": "10", "CreditLimit": i * 100,
             "SalesCurrencyCode": "USD" if company == "usmf" else "EUR"}
            for company, numbers in (("usmf", range(8)), ("demf", range(4, 12))) for i in numbers]
    assert fno.load("CustomersV3", rows)["created"] == 16
    yield
    fno.delete("CustomersV3", [{"dataAreaId": r["dataAreaId"], "CustomerAccount": r["CustomerAccount"]}
                               for r in rows])


def key(i: int, company: str = "usmf") -> str:
    return f"(dataAreaId eq '{company}' and CustomerAccount eq '{account(i)}')"


pages = all_pages


def same_as_scan(odata: httpx.Client, filter_text: str, *, by_key: bool = True, cross_company: bool = True,
                 page_size: int | None = None, **params: str) -> list[dict[str, Any]]:
    """The records of `filter_text` (all pages), asserting the scan answers the same (the count too) and
    whether the key index is used."""
    assert (key_filter(filter_text, CUSTOMERS, SCHEMA)[1] is not None) == by_key
    scan = f"not (not ({filter_text}))"
    assert key_filter(scan, CUSTOMERS, SCHEMA)[1] is None
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    query = {"$select": SELECT, **params, **({"cross-company": "true"} if cross_company else {})}
    fast = pages(odata, "CustomersV3", {"$filter": filter_text, **query}, headers)
    assert fast == pages(odata, "CustomersV3", {"$filter": scan, **query}, headers)
    counted = {"$filter": filter_text, **({"cross-company": "true"} if cross_company else {})}
    count = odata.get("CustomersV3/$count", params=counted)
    assert count.status_code == 200
    assert count.text == odata.get("CustomersV3/$count", params={**counted, "$filter": scan}).text
    rows = [row for page in fast for row in page["value"]]
    assert int(count.text) == len(rows) or "$top" in params or "$skip" in params
    return rows


def keys_of(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["CustomerAccount"], r["dataAreaId"]) for r in rows]


def test_an_or_of_keys_answers_as_the_scan_does_with_order_paging_and_count(odata: httpx.Client) -> None:
    filter_text = " or ".join([key(1), key(5, "demf"), key(5), key(7), key(10, "demf"), key(3)])
    rows = same_as_scan(odata, filter_text)
    assert keys_of(rows) == sorted([(account(1), "usmf"), (account(5), "demf"), (account(5), "usmf"),
                                    (account(7), "usmf"), (account(10), "demf"), (account(3), "usmf")],
                                   key=lambda k: (k[1], k[0]))  # key order: company, then account
    paged = same_as_scan(odata, filter_text, page_size=4, **{"$orderby": "CreditLimit desc", "$count": "true"})
    assert [r["CreditLimit"] for r in paged] == [1000, 700, 500, 500, 300, 100]
    window = same_as_scan(odata, filter_text, page_size=2, **{"$orderby": "CustomerAccount", "$top": "3",
                                                               "$skip": "1"})
    assert [r["CustomerAccount"] for r in window] == [account(3), account(5), account(5)]


def test_keys_in_another_casing_find_the_same_records(odata: httpx.Client) -> None:
    filter_text = (f"(dataAreaId eq 'USMF' and CustomerAccount eq '{account(2).lower()}') or "
                   f"(CustomerAccount eq '{account(9).lower()}' and dataAreaId eq 'Demf')")
    assert keys_of(same_as_scan(odata, filter_text)) == [(account(9), "demf"), (account(2), "usmf")]


def test_a_further_condition_of_a_disjunct_still_excludes_its_record(odata: httpx.Client) -> None:
    filter_text = (f"(dataAreaId eq 'usmf' and CustomerAccount eq '{account(1)}' and OrganizationName eq 'nobody') "
                   f"or (dataAreaId eq 'usmf' and CustomerAccount eq '{account(2)}' and CreditLimit ge 200) "
                   f"or (dataAreaId eq 'usmf' and CustomerAccount eq '{account(3)}' and CreditLimit gt 300)")
    assert keys_of(same_as_scan(odata, filter_text)) == [(account(2), "usmf")]


def test_keys_that_do_not_exist_find_nothing(odata: httpx.Client) -> None:
    rows = same_as_scan(odata, " or ".join([key(1), key(99), key(0, "demf"), key(11, "usmf"), key(1, "nope")]))
    assert keys_of(rows) == [(account(1), "usmf")]
    assert same_as_scan(odata, key(98)) == []


def test_a_key_or_anything_else_takes_the_scan(odata: httpx.Client) -> None:
    filter_text = f"{key(1)} or OrganizationName eq 'Key 9 demf'"
    assert keys_of(same_as_scan(odata, filter_text, by_key=False)) == [(account(9), "demf"), (account(1), "usmf")]
    # Half a key, a wildcard and a disjunct without a key all need the scan too.
    same_as_scan(odata, f"CustomerAccount eq '{account(1)}' or {key(2)}", by_key=False)
    same_as_scan(odata, f"(dataAreaId eq 'usmf' and CustomerAccount eq '{PREFIX}000*') or {key(2)}", by_key=False)
    same_as_scan(odata, f"{key(1)} or CreditLimit eq 200", by_key=False)


def test_without_cross_company_only_the_default_company_answers(odata: httpx.Client) -> None:
    filter_text = " or ".join([key(1), key(5, "demf"), key(5), key(10, "demf")])
    rows = same_as_scan(odata, filter_text, cross_company=False)
    assert keys_of(rows) == [(account(1), "usmf"), (account(5), "usmf")]
    assert same_as_scan(odata, key(10, "demf"), cross_company=False) == []
    # The company given once for an `or` of accounts (distributed over it).
    filter_text = f"dataAreaId eq 'demf' and (CustomerAccount eq '{account(4)}' or CustomerAccount eq '{account(6)}')"
    assert same_as_scan(odata, filter_text, cross_company=False) == []
    assert keys_of(same_as_scan(odata, filter_text)) == [(account(4), "demf"), (account(6), "demf")]


def test_a_written_record_is_found_with_its_new_values(odata: httpx.Client) -> None:
    path = f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account(0)}')"
    assert odata.patch(path, json={"OrganizationName": "Renamed"}).status_code == 204
    rows = same_as_scan(odata, f"{key(0)} and OrganizationName eq 'renamed'")
    assert [r["OrganizationName"] for r in rows] == ["Renamed"]
    assert odata.delete(path).status_code == 204
    assert same_as_scan(odata, key(0)) == []
