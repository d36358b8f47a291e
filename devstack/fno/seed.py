"""Deterministic demo data: the two legal entities the Dataverse simulator also knows (usmf, demf),
with currencies, payment terms, customer and vendor groups, customers, vendors, contacts and products.

Reference data (currencies, payment terms, groups) and the key formats (US-001, V-US-001, USC0010,
D0001) are the Dataverse simulator's, so the shipped maps link rows on both sides; names and amounts
differ on purpose, so a first sync has real differences to resolve."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from devstack.fno.auth import Caller
from devstack.fno.service import Service

SEED_CALLER = Caller("Admin", uuid.UUID("00000000-0000-0000-0000-00000000ad01"), "user")

LEGAL_ENTITIES = [
    {"LegalEntityId": "usmf", "Name": "Contoso Entertainment System USA", "AddressCountryRegionId": "USA",
     "AddressCity": "Redmond", "AddressStreet": "1 Microsoft Way", "AddressZipCode": "98052", "LanguageId": "en-us"},
    {"LegalEntityId": "demf", "Name": "Contoso Entertainment System Germany", "AddressCountryRegionId": "DEU",
     "AddressCity": "Munich", "AddressStreet": "Walter-Gropius-Strasse 5", "AddressZipCode": "80807",
     "LanguageId": "de", "IsSubsidiary": "Yes"},
]
CURRENCIES = [
    ("USD", "US Dollar", "$"), ("EUR", "Euro", "€"), ("GBP", "Pound Sterling", "£"), ("CAD", "Canadian Dollar", "CA$"),
    ("JPY", "Yen", "¥"), ("CHF", "Swiss Franc", "CHF"),
]
PAYMENT_TERMS = [("Net10", "Net 10 days", "Net", 10), ("Net30", "Net 30 days", "Net", 30),
                 ("Net45", "Net 45 days", "Net", 45), ("COD", "Cash on delivery", "COD", 0)]
CUSTOMER_GROUPS = [("10", "Wholesale customers"), ("20", "Major customers"), ("30", "Retail customers"),
                   ("40", "Internet customers"), ("90", "Other customers")]
VENDOR_GROUPS = [("10", "Parts vendors"), ("20", "Service vendors"), ("30", "Tax authority"), ("50", "Other vendors")]
COMPANY_PROFILE = {
    "usmf": {"prefix": "US", "currency": "USD", "country": "USA", "city": ["Seattle", "Redmond", "Portland", "Chicago",
             "Boston"], "language": "en-us"},
    "demf": {"prefix": "DE", "currency": "EUR", "country": "DEU", "city": ["Munich", "Berlin", "Hamburg", "Cologne",
             "Frankfurt"], "language": "de"},
}
CUSTOMER_NAMES = ["Contoso Retail", "Fabrikam Electronics", "Adventure Works", "Litware Stores", "Northwind Traders",
                  "Tailspin Toys", "Wingtip Supplies", "Proseware Outlet", "Alpine Ski House", "Coho Winery"]
VENDOR_NAMES = ["Fourth Coffee Parts", "Humongous Components", "Lucerne Logistics", "Margie's Services",
                "Trey Research Supply"]
PRODUCTS = [("D0001", "MidRangeSpeaker2", "Mid-range speaker", "79.99", "38.5"),
            ("D0002", "CabinetSpeaker", "Cabinet speaker", "249.5", "120.25"),
            ("D0003", "StandardSpeaker", "Standard speaker", "129", "61.125"),
            ("D0004", "HighEndSpeaker", "High-end speaker", "899.9999", "410.3333333333"),
            ("D0005", "InstallService", "Installation service", "150", "0")]
CONTACTS = [("Ana", "Bowman", "Purchasing manager", "Female"), ("Ben", "Miller", "Accounts payable", "Male"),
            ("Chloe", "Nguyen", "Owner", "Female"), ("David", "Schmidt", "Controller", "Male")]


# Party model (global address book): the parties behind the first usmf customers (organisations) and contact
# persons (persons), each with two primary postal addresses, one replacing the other on 2030-01-01 (the first
# valid until then, the second from then: it becomes the current primary address on its date), an e-mail and
# a phone. Party numbers are the customers' and contact
# persons' PartyNumber / ContactPersonPartyNumber, so the rows link up as in F&O.
PARTY_ORGANIZATIONS = [("USMF000001", "Contoso Retail (US)"), ("USMF000002", "Fabrikam Electronics (US)")]
PARTY_PERSONS = [("USMFP00001", "Ana", "Bowman"), ("USMFP00002", "Ben", "Miller")]
PARTY_FUTURE = "2030-01-01T00:00:00Z"


def _parties(service: Service) -> None:
    parties: list[dict[str, Any]] = [
        {"PartyNumber": n, "PartyType": "Organization", "Name": name, "NameAlias": name.split()[0],
         "LanguageId": "en-us"} for n, name in PARTY_ORGANIZATIONS]
    parties += [{"PartyNumber": n, "PartyType": "Person", "Name": f"{first} {last}", "PersonFirstName": first,
                 "PersonLastName": last, "NameAlias": last, "LanguageId": "en-us"} for n, first, last in PARTY_PERSONS]
    _create(service, "PartiesV2", parties)
    addresses, contacts = [], []
    for i, party in enumerate(parties):
        number, person = party["PartyNumber"], party["PartyType"] == "Person"
        addresses += [
            {"PartyNumber": number, "LocationId": f"{number}-A1", "Description": "Home" if person else "Head office",
             "AddressStreet": f"{200 + i} Pine Street", "AddressCity": "Seattle", "AddressZipCode": f"{98100 + i}",
             "AddressCountryRegionId": "USA", "AddressState": "WA", "Roles": "Home" if person else "Business;Invoice",
             "IsPrimary": "Yes", "IsRoleHome": "Yes" if person else "No", "IsRoleBusiness": "No" if person else "Yes",
             "IsRoleInvoice": "No" if person else "Yes", "ValidFrom": "2020-01-01T00:00:00Z", "ValidTo": PARTY_FUTURE},
            {"PartyNumber": number, "LocationId": f"{number}-A2", "Description": "New main address",
             "AddressStreet": f"{10 + i} Harbor Way", "AddressCity": "Tacoma", "AddressZipCode": f"{98400 + i}",
             "AddressCountryRegionId": "USA", "AddressState": "WA", "Roles": "Home" if person else "Business;Invoice",
             "IsPrimary": "Yes", "IsRoleHome": "Yes" if person else "No", "IsRoleBusiness": "No" if person else "Yes",
             "IsRoleInvoice": "No" if person else "Yes", "ValidFrom": PARTY_FUTURE},
        ]
        mail = f"{party['NameAlias'].lower()}@party.example"
        contacts += [
            {"PartyNumber": number, "LocationId": f"{number}-E1", "Description": "E-mail", "Type": "Email",
             "Locator": mail, "Purpose": "Business", "IsPrimary": "Yes"},
            {"PartyNumber": number, "LocationId": f"{number}-P1", "Description": "Phone", "Type": "Phone",
             "Locator": f"+1 206 555 0{100 + i}", "Purpose": "Business", "IsPrimary": "Yes",
             "IsMobilePhone": "Yes" if person else "No"},
        ]
    _create(service, "PartyLocationPostalAddressesV2", addresses)
    _create(service, "PartyContactsV2", contacts)


def _role_parties(service: Service, customers: list[dict[str, Any]], vendors: list[dict[str, Any]],
                  company: str) -> None:
    """The party of every other customer, vendor and contact person of `company` (no addresses): in F&O each
    of them is a role of a global address book party, so PartyNumber always names a row of PartiesV2."""
    known = {n for n, _ in PARTY_ORGANIZATIONS} | {n for n, _, _ in PARTY_PERSONS}
    rows = [{"PartyNumber": c["PartyNumber"], "PartyType": "Organization", "Name": c["OrganizationName"],
             "NameAlias": c["NameAlias"], "LanguageId": c["LanguageId"]} for c in customers]
    rows += [{"PartyNumber": v["VendorPartyNumber"], "PartyType": "Organization", "Name": v["VendorOrganizationName"],
              "NameAlias": v["VendorSearchName"], "LanguageId": v["LanguageId"]} for v in vendors]
    rows += [{"PartyNumber": f"{company.upper()}P{i + 1:05d}", "PartyType": "Person", "Name": f"{first} {last}",
              "PersonFirstName": first, "PersonLastName": last, "NameAlias": last, "LanguageId": "en-us"}
             for i, (first, last, _, _) in enumerate(CONTACTS)]
    _create(service, "PartiesV2", [row for row in rows if row["PartyNumber"] not in known])


def seed(service: Service) -> None:
    """Create the demo rows unless they are there already (re-running is harmless)."""
    if service.storage.count("LegalEntities"):
        return
    with service.unit():
        _create(service, "LegalEntities", LEGAL_ENTITIES)
        _create(service, "Currencies", [
            {"CurrencyCode": c, "Name": n, "Symbol": s, "IsoCurrencyCode": c, "GeneralRoundingRule": Decimal("0.01")}
            for c, n, s in CURRENCIES
        ])
        for company, profile in COMPANY_PROFILE.items():
            _company(service, company, profile)
        _parties(service)
        _reference_data(service)


def _company(service: Service, company: str, profile: dict[str, Any]) -> None:
    prefix, currency, cities = profile["prefix"], profile["currency"], profile["city"]
    _create(service, "PaymentTerms", [
        {"dataAreaId": company, "Name": n, "Description": d, "PaymentMethodType": m, "NumberOfDays": days}
        for n, d, m, days in PAYMENT_TERMS
    ])
    _create(service, "CustomerGroups", [
        {"dataAreaId": company, "CustomerGroupId": g, "Description": d, "PaymentTermId": "Net30"}
        for g, d in CUSTOMER_GROUPS
    ])
    _create(service, "VendorGroups", [
        {"dataAreaId": company, "VendorGroupId": g, "Description": d, "DefaultPaymentTermName": "Net30"}
        for g, d in VENDOR_GROUPS
    ])
    count = 10 if company == "usmf" else 5
    customers = []
    for i in range(count):
        account = f"{prefix}-{i + 1:03d}"
        customers.append({
            "dataAreaId": company, "CustomerAccount": account, "PartyType": "Organization",
            "PartyNumber": f"{company.upper()}{i + 1:06d}", "OrganizationName": f"{CUSTOMER_NAMES[i]} ({prefix})",
            "NameAlias": CUSTOMER_NAMES[i].split()[0], "CustomerGroupId": CUSTOMER_GROUPS[i % 4][0],
            "SalesCurrencyCode": currency, "PaymentTerms": PAYMENT_TERMS[i % 3][0],
            "CreditLimit": Decimal(10000 * (i + 1)) + Decimal("0.5") * (i % 2),
            "CreditLimitIsMandatory": "Yes" if i % 3 == 0 else "No",
            "ContactPersonId": f"{prefix}C{(i % 4) + 1:03d}0", "LanguageId": profile["language"],
            "PrimaryContactEmail": f"info@{CUSTOMER_NAMES[i].split()[0].lower()}.example",
            "AddressCountryRegionId": profile["country"], "AddressCity": cities[i % 5],
            "AddressStreet": f"{100 + i} Main Street", "AddressZipCode": f"{10000 + i * 7}",
            "AddressLatitude": Decimal("47.6") + Decimal(i) / 100,
            "AddressLongitude": Decimal("-122.3") - Decimal(i) / 100,
            "CustomerSinceDate": f"20{10 + i}-0{(i % 9) + 1}-15",
            "SalesMemo": "Seeded demo customer" if i % 2 == 0 else "",
        })
    _create(service, "CustomersV3", customers)
    vendors = []
    for i, name in enumerate(VENDOR_NAMES[: 5 if company == "usmf" else 3]):
        vendors.append({
            "dataAreaId": company, "VendorAccountNumber": f"V-{prefix}-{i + 1:03d}", "VendorPartyType": "Organization",
            "VendorPartyNumber": f"{company.upper()}V{i + 1:05d}", "VendorOrganizationName": f"{name} ({prefix})",
            "VendorSearchName": name.split()[0], "VendorGroupId": VENDOR_GROUPS[i % 3][0], "CurrencyCode": currency,
            "DefaultPaymentTermsName": PAYMENT_TERMS[(i + 1) % 3][0], "LanguageId": profile["language"],
            "AddressCountryRegionId": profile["country"], "AddressCity": cities[(i + 2) % 5],
            "PrimaryEmailAddress": f"sales@{name.split()[0].lower().rstrip(chr(39) + 's')}.example",
        })
    _create(service, "VendorsV2", vendors)
    _role_parties(service, customers, vendors, company)
    _create(service, "ContactPersonsV2", [
        {"dataAreaId": company, "ContactPersonId": f"{prefix}C{i + 1:03d}0", "FirstName": first, "LastName": last,
         "EmploymentProfession": title, "Gender": gender, "AssociatedContactType": "Customer",
         "AssociatedContactNumber": f"{prefix}-{i + 1:03d}",
         "ContactPersonPartyNumber": f"{company.upper()}P{i + 1:05d}",
         "PrimaryEmailAddress": f"{first.lower()}.{last.lower()}@example.com",
         "PrimaryPhoneNumber": f"+1 555 01{i:02d}"}
        for i, (first, last, title, gender) in enumerate(CONTACTS)
    ])
    _create(service, "ReleasedProductsV2", [
        {"dataAreaId": company, "ItemNumber": item, "ProductNumber": item, "ProductName": name, "SearchName": search,
         "ProductType": "Service" if search == "InstallService" else "Item", "ProductSubType": "Product",
         "ItemModelGroupId": "FIFO", "ProductGroupId": "Services" if search == "InstallService" else "Audio",
         "InventoryUnitSymbol": "ea", "SalesUnitSymbol": "ea", "PurchaseUnitSymbol": "ea",
         "SalesPrice": Decimal(price), "PurchasePrice": Decimal(cost), "UnitCost": Decimal(cost),
         "SalesPriceDate": "2024-01-01", "IsPhantom": "No"}
        for item, search, name, price, cost in PRODUCTS
    ])


# Finance, organisation and product reference data (maps shipped disabled; the scenario bundles turn them on). Only
# F&O is seeded: F&O is the primary side of these maps, and a scenario's initial sync fills Dataverse.
# A dated history: USD -> EUR has two rates, one from each start date (the key includes ValidFrom).
EXCHANGE_RATES = [("Default", "USD", "EUR", "0.9212345678", "2026-01-01", "2026-06-30"),
                  ("Default", "USD", "EUR", "0.9301234567", "2026-07-01", "2026-12-31"),
                  ("Default", "USD", "GBP", "0.7891234567", "2026-01-01", "2026-12-31"),
                  ("Default", "EUR", "USD", "1.0855088417", "2026-01-01", "2026-12-31")]
UNITS = [("ea", "Each", 0, "Quantity"), ("box", "Box", 0, "Quantity"), ("pcs", "Pieces", 0, "Quantity"),
         ("kg", "Kilogram", 3, "Mass")]


def _reference_data(service: Service) -> None:
    _create(service, "ExchangeRatesCDSEntity", [
        {"ExchangeRateTypeName": t, "FromCurrencyCode": f, "ToCurrencyCode": to, "Rate": Decimal(rate),
         "ValidFrom": start, "ValidTo": end}
        for t, f, to, rate, start, end in EXCHANGE_RATES
    ])
    _create(service, "OperatingUnits", [
        {"PartyNumber": "000000101", "OperatingUnitNumber": "OU000001", "Name": "Sales", "NameAlias": "Sales",
         "LanguageId": "en-us", "OperatingUnitType": "OMDepartment"},
        {"PartyNumber": "000000102", "OperatingUnitNumber": "OU000002", "Name": "Contoso Audio", "NameAlias": "Audio",
         "LanguageId": "en-us", "OperatingUnitType": "OMBusinessUnit"},
    ])
    _create(service, "UnitsOfMeasure", [
        {"UnitSymbol": s, "UnitDescription": d, "DecimalPrecision": p, "UnitClass": c} for s, d, p, c in UNITS
    ])
    # The shared products (not released per company): the distinct products and the T-shirt's product master.
    _create(service, "ProductsV2", [
        *({"ProductNumber": number, "ProductName": name, "ProductSearchName": search,
           "ProductType": "Service" if search == "InstallService" else "Item", "ProductSubType": "Product"}
          for number, search, name, _price, _cost in PRODUCTS),
        {"ProductNumber": "D0100", "ProductName": "T-shirt", "ProductSearchName": "TShirt", "ProductType": "Item",
         "ProductSubType": "ProductMaster"},
    ])
    _create(service, "ProductSpecificUnitOfMeasureConversions", [
        {"ProductNumber": PRODUCTS[0][0], "FromUnitSymbol": "box", "ToUnitSymbol": "ea", "Factor": Decimal("12"),
         "Numerator": 12, "Denominator": 1},
        {"ProductNumber": "D0100", "FromUnitSymbol": "box", "ToUnitSymbol": "ea", "Factor": Decimal("6"),
         "Numerator": 6, "Denominator": 1},
    ])
    # Product master D0100 (a T-shirt) and two of its variants, one per color, both size M, each with its style.
    # The T-shirt's dimensions are color, size and style: its variants have no configuration (it stays empty).
    _create(service, "ProductColors", [{"ColorId": "Black", "Description": "Black"},
                                       {"ColorId": "White", "Description": "White"}])
    _create(service, "ProductSizes", [{"SizeId": "M", "Description": "Medium"},
                                      {"SizeId": "L", "Description": "Large"}])
    _create(service, "ProductStyles", [{"StyleId": "Crew"}, {"StyleId": "VNeck"}])
    _create(service, "ProductConfigurations", [{"ConfigurationId": "Standard"}, {"ConfigurationId": "Premium"}])
    _create(service, "CDSReleasedDistinctProducts", [
        {"ProductNumber": f"D0100-{color[:3].upper()}-M", "ProductName": f"T-shirt {color.lower()} M",
         "ProductMasterNumber": "D0100", "ProductColorId": color, "ProductSizeId": "M", "ProductStyleId": style}
        for color, style in (("Black", "Crew"), ("White", "VNeck"))
    ])
    # The dimension values the T-shirt master may take (its variants are released from these).
    for collection, field, values in (("ProductMasterColors", "ProductColorId", ("Black", "White")),
                                      ("ProductMasterSizes", "ProductSizeId", ("M", "L")),
                                      ("ProductMasterStyles", "ProductStyleId", ("Crew", "VNeck"))):
        _create(service, collection, [
            {"ProductMasterNumber": "D0100", field: value, "ReplenishmentWeight": 1, "DisplaySequenceNumber": order}
            for order, value in enumerate(values, start=1)
        ])
    _create(service, "ProductCategories", [
        {"ProductCategoryHierarchyName": "Retail", "ProductCategoryName": "Audio", "ProductCategoryCode": "AUD",
         "ParentProductCategoryName": ""},
        {"ProductCategoryHierarchyName": "Retail", "ProductCategoryName": "Speakers", "ProductCategoryCode": "SPK",
         "ParentProductCategoryName": "Audio"},
    ])
    for company in COMPANY_PROFILE:
        _create(service, "DeliveryTerms", [
            {"dataAreaId": company, "TermsCode": c, "TermsDescription": d}
            for c, d in (("FOB", "Free on board"), ("CIF", "Cost, insurance and freight"), ("EXW", "Ex works"))
        ])
        _create(service, "DeliveryModesV2", [
            {"dataAreaId": company, "ModeCode": c, "ModeDescription": d}
            for c, d in (("Truck", "Truck"), ("Air", "Air freight"), ("Parcel", "Parcel service"))
        ])
        _create(service, "TaxGroups", [
            {"dataAreaId": company, "TaxGroupCode": c, "Description": d}
            for c, d in (("Taxable", "Taxable sales"), ("Exempt", "Tax exempt"))
        ])
        _create(service, "ItemSalesTaxGroups", [
            {"dataAreaId": company, "TaxItemGroup": c, "Name": d}
            for c, d in (("Full", "Full rate"), ("Reduced", "Reduced rate"))
        ])
        _create(service, "CustomerPaymentMethods", [
            {"dataAreaId": company, "Name": c, "Description": d}
            for c, d in (("Check", "Cheque"), ("Electronic", "Bank transfer"))
        ])
        _create(service, "OperationalSitesV2", [
            {"dataAreaId": company, "SiteId": "1", "SiteName": "Main site"},
            {"dataAreaId": company, "SiteId": "2", "SiteName": "Distribution site"},
        ])
        _create(service, "Warehouses", [
            {"dataAreaId": company, "WarehouseId": w, "WarehouseName": n, "OperationalSiteId": s}
            for w, n, s in (("11", "Main warehouse", "1"), ("12", "Returns", "1"), ("21", "Distribution", "2"))
        ])

def _create(service: Service, collection: str, rows: list[dict[str, Any]]) -> None:
    entity = service.entity(collection)
    for row in rows:
        service.create(entity, row, SEED_CALLER)
