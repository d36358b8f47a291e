"""Live sync both ways through the local host and both simulators, over HTTP only."""

from __future__ import annotations

import uuid
from decimal import Decimal

from tests.e2e.conftest import Stack, eventually


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def test_fno_customer_update_reaches_dataverse_with_exact_money(stack: Stack) -> None:
    name = f"Contoso Retail {_tag()}"
    amount = Decimal("123456.1234567891")
    response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-002')",
                              params={"cross-company": "true"},
                              json={"OrganizationName": name, "CreditLimit": str(amount)},
                              headers={"Content-Type": "application/json; IEEE754Compatible=true"})
    assert response.status_code == 204, response.text
    account = eventually(lambda: (a := stack.account("US-002")) and a["name"] == name and a,
                         what="the F&O name change reaching the account")
    assert Decimal(str(account["creditlimit"])) == amount


def test_dataverse_account_update_reaches_fno(stack: Stack) -> None:
    account = stack.account("US-003")
    assert account is not None
    name = f"Fabrikam {_tag()}"
    response = stack.dv.patch(f"accounts({account['accountid']})", json={"name": name})
    assert response.status_code == 204, response.text
    eventually(lambda: (c := stack.customer("US-003")) and c["OrganizationName"] == name,
               what="the Dataverse name change reaching the F&O customer")
