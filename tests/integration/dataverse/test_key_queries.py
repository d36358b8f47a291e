"""Reads of rows by key in one query (`(accountnumber eq 'X' and _msdyn_company_value eq <guid>) or ...`, as
initial sync reads a page's targets) are answered from the alternate-key index, and answer exactly what the
full scan does: every response is compared with the same filter wrapped in `not (not (...))`, which means the
same but takes the scan. Whether a filter takes the key index is checked on the parser (query.key_lookups)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.dataverse.odata_filter import parse_filter
from devstack.dataverse.query import key_lookups
from devstack.dataverse.schema import load_schema
from devstack.dataverse.seed import seed_id
from tests.fixtures.dataverse import DataverseSim, running_dataverse
from tests.fixtures.odata import all_pages

pytestmark = pytest.mark.integration
USMF = seed_id("cdm_company", "usmf")
DEMF = seed_id("cdm_company", "demf")
ACCOUNT = load_schema().table("account")
PREFIX = f"KQ{uuid.uuid4().hex[:5].upper()}-"


def number(i: int) -> str:
    return f"{PREFIX}{i:04d}"


@pytest.fixture(scope="module")
def dataverse() -> Iterator[DataverseSim]:
    """This module's own simulator: other tests of this folder count the seed's accounts."""
    with running_dataverse() as sim:
        yield sim


@pytest.fixture(scope="module")
def api(dataverse: DataverseSim) -> Iterator[httpx.Client]:
    """Twelve accounts: 0-7 in usmf, 4-11 in demf (4-7 in both: the company is part of the key)."""
    rows = [{"name": f"Key {i} {company}", "accountnumber": number(i), "creditlimit": i * 100,
             "msdyn_company@odata.bind": f"/cdm_companies(cdm_companycode='{company}')",
             "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='EUR')"}
            for company, numbers in (("usmf", range(8)), ("demf", range(4, 12))) for i in numbers]
    assert dataverse.load("accounts", rows)["created"] == 16
    with dataverse.client() as client:
        yield client


def key(i: int, company: str = USMF) -> str:
    return f"(accountnumber eq '{number(i)}' and _msdyn_company_value eq {company})"


def pages(api: httpx.Client, params: dict[str, str], headers: dict[str, str]) -> list[dict[str, Any]]:
    return all_pages(api, "accounts", params, headers)


def same_as_scan(api: httpx.Client, filter_text: str, *, by_key: bool = True, page_size: int | None = None,
                 annotations: bool = False, **params: str) -> list[dict[str, Any]]:
    """The rows of `filter_text` (all pages), asserting the scan answers the same and whether the key index
    is used."""
    assert (key_lookups(ACCOUNT, parse_filter(filter_text, ACCOUNT)) is not None) == by_key
    scan = f"not (not ({filter_text}))"
    assert key_lookups(ACCOUNT, parse_filter(scan, ACCOUNT)) is None
    headers = {}
    prefer = [f"odata.maxpagesize={page_size}"] if page_size else []
    if annotations:
        prefer.append('odata.include-annotations="*"')
    if prefer:
        headers["Prefer"] = ",".join(prefer)
    fast = pages(api, {"$filter": filter_text, **params}, headers)
    assert fast == pages(api, {"$filter": scan, **params}, headers)
    return [row for page in fast for row in page["value"]]


def numbers(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["accountnumber"], "usmf" if r["_msdyn_company_value"] == USMF else "demf") for r in rows]


def test_an_or_of_keys_answers_as_the_scan_does_with_order_paging_count_and_annotations(api: httpx.Client) -> None:
    filter_text = " or ".join([key(1), key(5, DEMF), key(5), key(7), key(10, DEMF), key(3)])
    rows = same_as_scan(api, filter_text, **{"$select": "accountnumber,name,_msdyn_company_value"})
    assert sorted(numbers(rows)) == sorted([(number(1), "usmf"), (number(5), "demf"), (number(5), "usmf"),
                                            (number(7), "usmf"), (number(10), "demf"), (number(3), "usmf")])
    paged = same_as_scan(api, filter_text, page_size=4, annotations=True, **{
        "$select": "accountnumber,creditlimit,_msdyn_company_value", "$orderby": "creditlimit desc",
        "$count": "true"})
    assert [r["creditlimit"] for r in paged] == [1000, 700, 500, 500, 300, 100]
    assert all("_msdyn_company_value@OData.Community.Display.V1.FormattedValue" in r for r in paged)
    top = same_as_scan(api, filter_text, **{"$select": "accountnumber", "$orderby": "accountnumber", "$top": "2"})
    assert [r["accountnumber"] for r in top] == [number(1), number(3)]


def test_keys_in_another_casing_find_the_same_rows(api: httpx.Client) -> None:
    filter_text = (f"(accountnumber eq '{number(2).lower()}' and _msdyn_company_value eq {USMF.upper()}) or "
                   f"(_msdyn_company_value eq '{DEMF.upper()}' and accountnumber eq '{number(9).lower()}')")
    rows = same_as_scan(api, filter_text, **{"$select": "accountnumber,_msdyn_company_value"})
    assert sorted(numbers(rows)) == [(number(2), "usmf"), (number(9), "demf")]


def test_a_further_condition_of_a_disjunct_still_excludes_its_row(api: httpx.Client) -> None:
    filter_text = (f"(accountnumber eq '{number(1)}' and _msdyn_company_value eq {USMF} and name eq 'nobody') "
                   f"or (accountnumber eq '{number(2)}' and _msdyn_company_value eq {USMF} and creditlimit ge 200) "
                   f"or (accountnumber eq '{number(3)}' and _msdyn_company_value eq {USMF} and creditlimit gt 300)")
    rows = same_as_scan(api, filter_text, **{"$select": "accountnumber,_msdyn_company_value"})
    assert numbers(rows) == [(number(2), "usmf")]


def test_keys_that_do_not_exist_find_nothing(api: httpx.Client) -> None:
    rows = same_as_scan(api, " or ".join([key(1), key(99), key(0, DEMF), key(11, USMF)]),
                        **{"$select": "accountnumber,_msdyn_company_value"})
    assert numbers(rows) == [(number(1), "usmf")]
    assert same_as_scan(api, key(98)) == []


def test_a_key_or_anything_else_takes_the_scan(api: httpx.Client) -> None:
    filter_text = f"{key(1)} or startswith(name,'Key 9 ')"
    rows = same_as_scan(api, filter_text, by_key=False, **{"$select": "accountnumber,_msdyn_company_value"})
    assert sorted(numbers(rows)) == [(number(1), "usmf"), (number(9), "demf")]
    # Half a key, an empty value (not in the index) and a disjunct without a key all need the scan too.
    same_as_scan(api, f"accountnumber eq '{number(1)}' or {key(2)}", by_key=False)
    same_as_scan(api, f"(accountnumber eq '' and _msdyn_company_value eq {USMF}) or {key(2)}", by_key=False)
    same_as_scan(api, f"{key(1)} or creditlimit eq 200", by_key=False)


def test_the_company_lookup_of_the_key_and_the_primary_id_are_keys_too(api: httpx.Client) -> None:
    # The lookup column as `_x_value`, given once for an `or` of numbers (distributed over it).
    filter_text = (f"_msdyn_company_value eq {DEMF} and "
                   f"(accountnumber eq '{number(4)}' or accountnumber eq '{number(6)}')")
    rows = same_as_scan(api, filter_text, **{"$select": "accountnumber,_msdyn_company_value,accountid"})
    assert sorted(numbers(rows)) == [(number(4), "demf"), (number(6), "demf")]
    ids = [r["accountid"] for r in rows]
    by_id = same_as_scan(api, f"accountid eq {ids[0]} or accountid eq {ids[1].upper()} or accountid eq {uuid.uuid4()}",
                         **{"$select": "accountnumber,_msdyn_company_value"})
    assert sorted(numbers(by_id)) == [(number(4), "demf"), (number(6), "demf")]
    # A lookup compared with another company's id matches nothing, as in the scan.
    assert same_as_scan(api, key(0, DEMF)) == []


def test_a_written_row_is_found_by_its_new_key_and_not_its_old_one(dataverse: DataverseSim,
                                                                     api: httpx.Client) -> None:
    rows = same_as_scan(api, key(0), **{"$select": "accountid"})
    moved = number(50)
    assert api.patch(f"accounts({rows[0]['accountid']})", json={"accountnumber": moved}).status_code == 204
    assert same_as_scan(api, key(0)) == []
    assert len(same_as_scan(api, f"{key(50)} or {key(0)}")) == 1
    dataverse.update("accounts", rows[0]["accountid"], {"accountnumber": number(0)})
    assert numbers(same_as_scan(api, f"{key(50)} or {key(0)}", **{"$select": "accountnumber,_msdyn_company_value"})
                   ) == [(number(0), "usmf")]
