"""An independent generic OData v4 client (PyPI `python-odata`) reads `$metadata` and pages an entity set.

`d365fo-client` needs Python 3.13+, so it cannot run on this project's 3.11; python-odata builds its
entity classes from our CSDL and follows `@odata.nextLink` on its own.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import requests
from odata import ODataService

from tests.fixtures.fno import FnoSimulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(fno: FnoSimulator) -> ODataService:
    session = requests.Session()
    session.headers.update(fno.headers())
    session.headers["Prefer"] = "odata.maxpagesize=3"  # small server pages so the client has to follow nextLink
    return ODataService(fno.data_url, reflect_entities=True, session=session)


def test_client_reflects_entity_sets_from_metadata(service: ODataService) -> None:
    assert {"CustomersV3", "VendorsV2", "ReleasedProductsV2", "ContactPersonsV2"} <= set(service.entities)


def test_client_pages_an_entity_set(service: ODataService, odata: httpx.Client) -> None:
    customer = service.entities["CustomersV3"]
    rows = list(service.query(customer))
    expected = int(odata.get("CustomersV3/$count").text)
    assert len(rows) == expected > 3  # more than one server page
    assert len({r.CustomerAccount for r in rows}) == expected
    first = next(r for r in rows if r.CustomerAccount == "US-001")
    assert isinstance(first.CreditLimit, Decimal) and first.CreditLimit == Decimal(10000)
    assert first.CreditLimitIsMandatory.name == "Yes"


def test_client_filters_and_reads_by_composite_key(service: ODataService) -> None:
    customer = service.entities["CustomersV3"]
    group_10 = list(service.query(customer).filter(customer.CustomerGroupId == "10"))
    assert group_10 and {r.CustomerGroupId for r in group_10} == {"10"}
    one = service.query(customer).get(dataAreaId="usmf", CustomerAccount="US-001")
    assert one.OrganizationName == "Contoso Retail (US)"
