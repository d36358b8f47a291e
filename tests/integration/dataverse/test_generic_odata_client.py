"""A second independent client: the generic OData v4 library `python-odata` builds its model from the
simulator's CSDL `$metadata`, pages an entity set, filters, and creates a row."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import requests

odata = pytest.importorskip("odata")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(dataverse):
    session = requests.Session()
    session.headers.update(dataverse.headers())
    # Small pages so the client must follow @odata.nextLink; python-odata reads created rows only from a
    # body, so ask for one (Dataverse answers 204 + OData-EntityId otherwise).
    session.headers["Prefer"] = "odata.maxpagesize=50,return=representation"
    return odata.ODataService(dataverse.base_url, reflect_entities=True, session=session)


def test_metadata_reflects_every_entity_set(service):
    assert {"accounts", "contacts", "msdyn_customergroups", "cdm_companies", "transactioncurrencies"} <= set(
        service.entities)


def test_pages_filters_and_creates(service):
    contact = service.entities["contacts"]
    rows = list(service.query(contact).filter(contact.msdyn_contactpersonid != None))  # noqa: E711
    assert len(rows) == len({r.contactid for r in rows}) == 200
    account = service.entities["accounts"]
    number = "GO-" + uuid.uuid4().hex[:6]
    new = account()
    new.name = "via python-odata"
    new.accountnumber = number
    new.creditlimit = Decimal("99.1234567891")
    service.save(new)
    got = service.query(account).filter(account.accountnumber == number).first()
    assert got.name == "via python-odata" and got.creditlimit == Decimal("99.1234567891")
    assert str(got.accountid) == str(new.accountid)
