"""One page at a time from both clients (the resumable reader of initial sync keeps `next_link` as its
checkpoint): several pages, a stored link read later by another client resumes exactly after the last
row read, filter and select hold on every page, the last page has no link."""

from __future__ import annotations

from typing import Any

from core.connectors import DataverseClient, FnoClient, LocalTokens, Page
from tests.fixtures.dataverse import DataverseSim
from tests.fixtures.fno import FnoSimulator

DV_FILTER = "startswith(accountnumber,'US-0')"  # the seed's US-001..US-060 of 100 seeded accounts
FNO_FILTER = "CustomerAccount eq 'US-0*' or CustomerAccount eq 'DE-0*'"  # seed: 10 in usmf, 5 in demf


async def every_page(first: Page, read_next: Any) -> list[Page]:
    pages = [first]
    while pages[-1].next_link is not None:
        pages.append(await read_next(pages[-1].next_link))
    return pages


async def test_dataverse_pages_resume_from_a_stored_link(dv: DataverseClient, dataverse: DataverseSim) -> None:
    select = ["accountnumber", "name"]
    first = await dv.page("accounts", filter=DV_FILTER, select=select, orderby="accountnumber", page_size=7)
    assert len(first.rows) == 7 and first.next_link is not None
    assert first.next_link.startswith(dataverse.base_url + "accounts?")

    async def read(link: str) -> Page:
        # Each page from a new client: a checkpoint is read back after a restart, not from memory.
        async with DataverseClient(dataverse.url, LocalTokens()) as later:
            return await later.page("accounts", page_size=7, next_link=link)

    pages = await every_page(first, read)
    numbers = [row["accountnumber"] for page in pages for row in page.rows]
    assert len(pages) >= 9 and all(len(page.rows) == 7 for page in pages[:-1]) and 1 <= len(pages[-1].rows) <= 7
    assert pages[-1].next_link is None
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # each page starts after the last
    assert all(n.startswith("US-0") for n in numbers)  # the filter holds on every page
    assert {f"US-{i:03d}" for i in range(1, 61)} <= set(numbers)
    assert all(set(row) <= {"@odata.etag", "accountid", *select} for page in pages for row in page.rows)
    assert numbers == [r["accountnumber"] for r in await dv.query(
        "accounts", filter=DV_FILTER, select=select, orderby="accountnumber", page_size=7)]

    again = await dv.page("accounts", page_size=7, next_link=first.next_link)
    assert again == pages[1]  # a link read twice answers the same page


async def test_dataverse_last_page_and_top(dv: DataverseClient) -> None:
    only = await dv.page("accounts", filter="accountnumber eq 'US-001'", select=["accountnumber"])
    assert [r["accountnumber"] for r in only.rows] == ["US-001"] and only.next_link is None
    top = await dv.page("accounts", filter=DV_FILTER, select=["accountnumber"], orderby="accountnumber", top=3)
    assert [r["accountnumber"] for r in top.rows] == ["US-001", "US-002", "US-003"] and top.next_link is None


async def test_fno_pages_resume_from_a_stored_link_across_companies(fo: FnoClient, fno: FnoSimulator) -> None:
    select = ["dataAreaId", "CustomerAccount", "CreditLimit"]
    first = await fo.page("CustomersV3", filter=FNO_FILTER, select=select, orderby="CustomerAccount", page_size=4)
    assert len(first.rows) == 4 and first.next_link is not None

    async def read(link: str) -> Page:
        async with FnoClient(fno.url, LocalTokens()) as later:
            return await later.page("CustomersV3", page_size=4, next_link=link)

    pages = await every_page(first, read)
    keys = [(row["CustomerAccount"], row["dataAreaId"]) for page in pages for row in page.rows]
    assert len(pages) >= 4 and all(len(page.rows) == 4 for page in pages[:-1]) and pages[-1].next_link is None
    assert [k[0] for k in keys] == sorted(k[0] for k in keys) and len(set(keys)) == len(keys)
    assert all(account.startswith(("US-0", "DE-0")) for account, _ in keys)
    assert {"usmf", "demf"} <= {company for _, company in keys}  # cross-company kept on later pages
    assert all(set(row) == {"@odata.etag", *select} for page in pages for row in page.rows)
    assert keys == [(r["CustomerAccount"], r["dataAreaId"]) for r in await fo.query(
        "CustomersV3", filter=FNO_FILTER, select=select, orderby="CustomerAccount", page_size=4)]


async def test_fno_one_company_and_server_page_size(fo: FnoClient) -> None:
    own = await fo.page("CustomersV3", filter=FNO_FILTER, select=["dataAreaId"], cross_company=False, page_size=2)
    assert own.next_link is not None

    async def rest(link: str) -> Page:
        return await fo.page("CustomersV3", cross_company=False, page_size=2, next_link=link)

    pages = await every_page(own, rest)
    assert {row["dataAreaId"] for page in pages for row in page.rows} == {"usmf"}  # the caller's default company
    whole = await fo.page("CustomersV3", filter=FNO_FILTER, select=["CustomerAccount"], page_size=None)
    assert whole.next_link is None and len(whole.rows) >= 15


async def test_a_write_between_pages_is_seen_by_the_next_page(dv: DataverseClient, fo: FnoClient,
                                                              dataverse: DataverseSim, fno: FnoSimulator,
                                                              unique: str) -> None:
    """The simulators keep a query's ordered answer between its pages; a write to the set must drop it."""
    dataverse.load("accounts", [{"name": "Paged", "accountnumber": f"PG{unique}-{i}"} for i in range(1, 5)])
    first = await dv.page("accounts", filter=f"startswith(accountnumber,'PG{unique}-')", select=["accountnumber"],
                          orderby="accountnumber", page_size=2)
    dataverse.load("accounts", [{"name": "Paged", "accountnumber": f"PG{unique}-9"}])
    rest = await dv.page("accounts", page_size=2, next_link=first.next_link)
    assert [r["accountnumber"] for r in rest.rows] == [f"PG{unique}-3", f"PG{unique}-4"]
    assert rest.next_link is not None  # the row loaded after the first page comes on a third one

    fno.load("CustomersV3", [{"dataAreaId": "usmf", "CustomerAccount": f"PG{unique}-{i}", "CustomerGroupId": "10"}
                             for i in range(1, 5)])
    first = await fo.page("CustomersV3", filter=f"CustomerAccount eq 'PG{unique}-*'", select=["CustomerAccount"],
                          orderby="CustomerAccount", page_size=2)
    fno.delete("CustomersV3", [{"dataAreaId": "usmf", "CustomerAccount": f"PG{unique}-1"}])
    rest = await fo.page("CustomersV3", page_size=2, next_link=first.next_link)
    # F&O's links skip by count ($skip=2): with the first record gone, the fourth moves up into this page.
    assert [r["CustomerAccount"] for r in rest.rows] == [f"PG{unique}-4"] and rest.next_link is None
