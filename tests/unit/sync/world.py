"""A small two-sided world for the apply engine: the shipped maps, reference rows on both sides
(company USMF, currency USD, customer group 10, vendor group VG1, payment terms Net30), and
helpers that make change events the way ingest does."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.events.model import ChangeEvent, lookup_ref
from core.maps import MapSet
from core.sync.apply import Applier
from core.sync.sides import DataverseSide, FnoSide
from tests.unit.sync.fakes import FakeDataverse, FakeFno, MemoryLinks

MAPS = Path(__file__).resolve().parents[3] / "maps"
ENGINE_USER = "0b8a7d1e-5f00-4c2b-9d7e-3a1f00e0e0e0"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def customer(account: str = "US-001", **values: Any) -> dict[str, Any]:
    """A CustomersV3 record as F&O holds it."""
    return {"dataAreaId": "usmf", "CustomerAccount": account, "OrganizationName": "Contoso Retail",
            "CreditLimit": Decimal("1000.0000000000"), "CreditLimitIsMandatory": "No", "OnHoldStatus": "No",
            "AddressStreet": "1 Main St", "AddressCity": "Seattle", "AddressZipCode": "98052",
            "AddressCountryRegionId": "USA", "PrimaryContactEmail": "ap@contoso.example",
            "PrimaryContactPhone": "+1 555 0100", "SalesMemo": "", "LanguageId": "en-us",
            "PartyType": "Organization", "CustomerGroupId": "10", "SalesCurrencyCode": "USD",
            "PaymentTerms": "Net30", "ContactPersonId": "", "InvoiceAccount": "", **values}


def vendor(account: str = "V-001", **values: Any) -> dict[str, Any]:
    return {"dataAreaId": "usmf", "VendorAccountNumber": account, "VendorOrganizationName": "Fabrikam Supply",
            "AddressCity": "Redmond", "AddressCountryRegionId": "USA", "OnHoldStatus": "No",
            "VendorPartyType": "Organization", "VendorGroupId": "VG1", "CurrencyCode": "USD", **values}


@dataclass
class World:
    maps: MapSet
    links: MemoryLinks
    dv: FakeDataverse
    fo: FakeFno
    applier: Applier
    company_id: str
    group_id: str
    currency_id: str
    terms_id: str
    vendor_group_id: str

    # -- events as ingest makes them ---------------------------------------------------------------
    def fno_event(self, map: str, keys: dict[str, Any], operation: str = "update", *,
                  at: datetime | None = None, pre: dict[str, Any] | None = None) -> ChangeEvent:
        entity = self.maps[map].fno.entity_set
        return ChangeEvent(event_id=f"fo-{next(_ids)}", map=map, source="fno", entity=entity, operation=operation,
                           company=str(keys.get("dataAreaId", "")).upper() or None, keys=keys, pre=pre,
                           occurred_at=at or datetime.now(UTC))

    def dv_event(self, map: str, record_id: str | None, operation: str = "update", *,
                 values: dict[str, Any] | None = None, pre: dict[str, Any] | None = None,
                 version: str | None = None, at: datetime | None = None,
                 initiated_by: str | None = None) -> ChangeEvent:
        table = self.maps[map].dataverse.table
        return ChangeEvent(event_id=f"dv-{next(_ids)}", map=map, source="dataverse", entity=table,
                           operation=operation, record_id=record_id, values=values or {}, pre=pre,
                           version=version, occurred_at=at or datetime.now(UTC), initiated_by=initiated_by)

    def company_ref(self) -> dict[str, Any]:
        return lookup_ref("cdm_company", self.company_id)

    # -- rows ---------------------------------------------------------------------------------------
    def account(self, number: str = "US-001") -> dict[str, Any] | None:
        rows = [r for r in self.dv.tables["accounts"].values() if r.get("accountnumber") == number]
        return rows[0] if rows else None

    def account_row(self, number: str = "US-001") -> dict[str, Any]:
        found = self.account(number)
        assert found is not None, f"no account {number}"
        return found

    def image(self, row_id: str) -> dict[str, Any]:
        """What a webhook of the account carries: a full image, lookups as navigation properties."""
        row = self.dv.tables["accounts"][row_id]
        return {k: v for k, v in row.items() if not k.startswith("_")} | {
            "msdyn_company": self.company_ref(),
            "msdyn_customergroupid": lookup_ref("msdyn_customergroup", self.group_id),
            "transactioncurrencyid": lookup_ref("transactioncurrency", self.currency_id),
            "msdyn_paymentterm": lookup_ref("msdyn_paymentterm", self.terms_id), "primarycontactid": None,
            "description": row.get("description")}

    def add_account(self, number: str = "US-001", **values: Any) -> str:
        """An account as a Dataverse user would have made it (customer type 3, USMF, group 10)."""
        return self.dv.add("accounts", {
            "accountnumber": number, "name": "Contoso Retail", "creditlimit": Decimal("1000"),
            "msdyn_creditlimitismandatory": False, "msdyn_onholdstatus": 192350000,
            "address1_line1": "1 Main St", "address1_city": "Seattle", "address1_postalcode": "98052",
            "address1_country": "USA", "emailaddress1": "ap@contoso.example", "telephone1": "+1 555 0100",
            "description": None, "customertypecode": 3, "_msdyn_company_value": self.company_id,
            "_msdyn_customergroupid_value": self.group_id, "_transactioncurrencyid_value": self.currency_id,
            "_msdyn_paymentterm_value": self.terms_id, "_primarycontactid_value": None, **values})

    async def linked_customer(self, number: str = "US-001", **values: Any) -> str:
        """An F&O customer synced once to Dataverse (link in place); the account's row id."""
        self.fo.add("CustomersV3", customer(number, **values))
        result = await self.applier.apply(self.fno_event("customers", {"dataAreaId": "usmf",
                                                                       "CustomerAccount": number}, at=T0))
        assert result.outcome == "applied", result
        self.dv.calls.clear()
        self.fo.calls.clear()
        return result.target_id or ""


def build_world() -> World:
    maps = MapSet.load([MAPS])
    dv = FakeDataverse({m.dataverse.entity_set: m.dataverse.primary_id for m in maps.values()})
    fo = FakeFno({m.fno.entity_set: m.fno.key for m in maps.values()})
    company = dv.add("cdm_companies", {"cdm_companycode": "USMF", "cdm_name": "Contoso USA"})
    ref = {"_msdyn_company_value": company}
    group = dv.add("msdyn_customergroups", {"msdyn_groupid": "10", "msdyn_description": "Wholesale", **ref})
    currency = dv.add("transactioncurrencies", {"isocurrencycode": "USD", "currencyname": "US Dollar"})
    terms = dv.add("msdyn_paymentterms", {"msdyn_name": "Net30", **ref})
    vendor_group = dv.add("msdyn_vendorgroups", {"msdyn_vendorgroup": "VG1", "msdyn_description": "Parts", **ref})
    fo.add("LegalEntities", {"LegalEntityId": "USMF", "Name": "Contoso USA"})
    fo.add("Currencies", {"CurrencyCode": "USD", "Name": "US Dollar", "Symbol": "$"})
    fo.add("CustomerGroups", {"dataAreaId": "usmf", "CustomerGroupId": "10", "Description": "Wholesale"})
    fo.add("VendorGroups", {"dataAreaId": "usmf", "VendorGroupId": "VG1", "Description": "Parts"})
    fo.add("PaymentTerms", {"dataAreaId": "usmf", "Name": "Net30"})
    links = MemoryLinks()
    applier = Applier(maps, links, DataverseSide(dv, maps, links), FnoSide(fo, maps, links),  # type: ignore[arg-type]
                      engine_user=ENGINE_USER)
    return World(maps, links, dv, fo, applier, company, group, currency, terms, vendor_group)


def earlier(minutes: int) -> datetime:
    return T0 - timedelta(minutes=minutes)
