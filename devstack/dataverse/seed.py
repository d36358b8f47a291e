"""Seed data. System rows always (organization, business unit, SYSTEM user, sdkmessages and
sdkmessagefilters for webhook registration); with `--seed on` also a deterministic demo data set:
two companies (usmf, demf), currencies, payment terms, customer and vendor groups, accounts, contacts,
vendors and products, all referencing each other. Ids are uuid5 of the natural key, so every run
produces the same rows."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from devstack.dataverse.auth import BUSINESS_UNIT_ID, ORGANIZATION_ID
from devstack.dataverse.resources import key_texts
from devstack.dataverse.schema import Ref
from devstack.dataverse.virtual import ODATA_V4_PROVIDER_ID, ODATA_V4_PROVIDER_NAME

if TYPE_CHECKING:
    from devstack.dataverse.app import Simulator

SEED_NS = uuid.UUID("9a3c5e7f-1b2d-4f6a-8c0e-2d4f6a8c0e1b")
SYSTEM_USER_ID = "7f3e2a10-0000-4000-8000-000000000001"
SEED_TIME = "2026-01-01T00:00:00Z"
MESSAGES = ("Create", "Update", "Delete", "Retrieve", "RetrieveMultiple", "Assign", "SetState")
# The virtual table event messages; their sdkmessagefilters are made per virtual table when it is created.
EXTERNAL_MESSAGES = ("OnExternalCreated", "OnExternalUpdated", "OnExternalDeleted")
COMPANIES = {"usmf": ("Contoso Entertainment System USA", "USD", "US"),
             "demf": ("Contoso Entertainment System Germany", "EUR", "DE")}
CURRENCIES = [("USD", "US Dollar", "$", "1"), ("EUR", "Euro", "€", "0.9212345678"),
              ("GBP", "Pound Sterling", "£", "0.7923456789"), ("CAD", "Canadian Dollar", "CA$", "1.3645678901"),
              ("JPY", "Yen", "¥", "149.8765432109"), ("CHF", "Swiss Franc", "CHF", "0.8812345678")]
PAYMENT_TERMS = [("Net10", "Net 10 days", 10), ("Net30", "Net 30 days", 30), ("Net45", "Net 45 days", 45),
                 ("COD", "Cash on delivery", 0)]
CUSTOMER_GROUPS = [("10", "Wholesale customers"), ("20", "Major customers"), ("30", "Retail customers"),
                   ("40", "Internet customers"), ("90", "Other customers")]
VENDOR_GROUPS = [("10", "Parts vendors"), ("20", "Service vendors"), ("30", "Tax authority"), ("50", "Other vendors")]
ACCOUNTS_PER_COMPANY = {"usmf": 60, "demf": 40}
VENDORS_PER_COMPANY = {"usmf": 30, "demf": 20}
PRODUCTS = 40
CITIES = {"US": ["Seattle", "Redmond", "Chicago", "Atlanta", "Dallas"],
          "DE": ["Berlin", "Munich", "Hamburg", "Cologne"]}
NAMES = ["Adatum", "Fabrikam", "Northwind", "Tailspin", "Litware", "Proseware", "Wingtip", "Woodgrove", "Alpine",
         "Fourth Coffee", "Lucerne", "Margie's", "Coho", "Humongous", "Trey Research", "Wide World", "Blue Yonder"]
FIRST = ["Anna", "Ben", "Chloe", "David", "Eva", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kara", "Liam"]
LAST = ["Meyer", "Smith", "Garcia", "Schmidt", "Nguyen", "Brown", "Weber", "Jones", "Fischer", "Lopez"]


def seed_id(table: str, *key: str) -> str:
    return str(uuid.uuid5(SEED_NS, "/".join((table, *key))))


def _insert(sim: Simulator, table_name: str, row_id: str, values: dict[str, Any]) -> None:
    table = sim.schema.table(table_name)
    row: dict[str, Any] = {table.primary_id: row_id, **values}
    for name in ("statecode", "statuscode"):
        if name in table.columns and name not in row:
            row[name] = 0 if name == "statecode" else 1
    system = Ref("systemuser", SYSTEM_USER_ID)
    row.update({"createdon": SEED_TIME, "modifiedon": SEED_TIME, "createdby": system, "modifiedby": system})
    for column in table.columns.values():
        if column.computed:
            row[column.name] = " ".join(str(row[p]) for p in column.computed.split() if row.get(p)) or None
    if sim.db.get(table_name, row_id) is not None:
        return
    version = sim.db.next_version(table_name, row_id, "upsert")
    row["versionnumber"] = version
    sim.db.put(table_name, row_id, version, table.encode(row), key_texts(table, row), new=True)


def seed_system(sim: Simulator) -> None:
    sim.db.conn.execute("BEGIN")
    _insert(sim, "organization", ORGANIZATION_ID, {"name": sim.settings.webhooks.organization_name})
    _insert(sim, "businessunit", BUSINESS_UNIT_ID, {"name": sim.settings.webhooks.organization_name})
    _insert(sim, "systemuser", SYSTEM_USER_ID,
            {"fullname": "SYSTEM", "businessunitid": Ref("businessunit", BUSINESS_UNIT_ID)})
    for message in MESSAGES:
        message_id = seed_id("sdkmessage", message)
        _insert(sim, "sdkmessage", message_id, {"name": message})
        for table in sim.schema.tables.values():
            if table.system or table.virtual is not None:  # virtual tables take only OnExternal* steps
                continue
            _insert(sim, "sdkmessagefilter", seed_id("sdkmessagefilter", message, table.logical_name), {
                "name": f"{message} of {table.logical_name}", "primaryobjecttypecode": table.logical_name,
                "secondaryobjecttypecode": "none", "sdkmessageid": Ref("sdkmessage", message_id),
            })
    for message in EXTERNAL_MESSAGES:
        _insert(sim, "sdkmessage", seed_id("sdkmessage", message), {"name": message})
    _insert(sim, "entitydataprovider", ODATA_V4_PROVIDER_ID,
            {"name": ODATA_V4_PROVIDER_NAME, "datasourcelogicalname": "msdyn_odatav4ds"})
    sim.db.conn.execute("COMMIT")


def seed_demo(sim: Simulator) -> None:
    seed_system(sim)
    rnd = random.Random(20260101)
    sim.db.conn.execute("BEGIN")
    for iso, name, symbol, rate in CURRENCIES:
        _insert(sim, "transactioncurrency", seed_id("transactioncurrency", iso), {
            "isocurrencycode": iso, "currencyname": name, "currencysymbol": symbol, "exchangerate": Decimal(rate),
            "currencyprecision": 0 if iso == "JPY" else 2,
        })
    for number in range(1, PRODUCTS + 1):
        code = f"D{number:04d}"
        _insert(sim, "product", seed_id("product", code), {
            "productnumber": code, "msdyn_productnumber": code, "name": f"Speaker model {code}",
            "description": f"Demo product {code}", "productstructure": 1, "producttypecode": 1, "quantitydecimal": 2,
            "price": Decimal(rnd.randrange(1000, 500000)) / 100 + Decimal("0.0012345678"),
            "standardcost": Decimal(rnd.randrange(500, 250000)) / 100,
            "stockweight": Decimal(rnd.randrange(100, 50000)) / 1000,
            "transactioncurrencyid": Ref("transactioncurrency", seed_id("transactioncurrency", "USD")),
        })
    for code, (company_name, currency, country) in COMPANIES.items():
        company = Ref("cdm_company", seed_id("cdm_company", code))
        _insert(sim, "cdm_company", company.id, {"cdm_companycode": code, "cdm_name": company_name})
        currency_ref = Ref("transactioncurrency", seed_id("transactioncurrency", currency))
        terms = []
        for term, description, days in PAYMENT_TERMS:
            ref = Ref("msdyn_paymentterm", seed_id("msdyn_paymentterm", code, term))
            _insert(sim, "msdyn_paymentterm", ref.id, {
                "msdyn_name": term, "msdyn_description": description, "msdyn_days": days,
                "msdyn_company": company, "msdyn_paymentmethodtype": 192350005 if term == "COD" else 192350000,
            })
            terms.append(ref)
        groups = []
        for group, description in CUSTOMER_GROUPS:
            ref = Ref("msdyn_customergroup", seed_id("msdyn_customergroup", code, group))
            _insert(sim, "msdyn_customergroup", ref.id, {
                "msdyn_groupid": group, "msdyn_description": description, "msdyn_company": company,
                "msdyn_paymenttermid": terms[1], "msdyn_issalestaxincludedinprice": False,
            })
            groups.append(ref)
        vendor_groups = []
        for group, description in VENDOR_GROUPS:
            ref = Ref("msdyn_vendorgroup", seed_id("msdyn_vendorgroup", code, group))
            _insert(sim, "msdyn_vendorgroup", ref.id, {
                "msdyn_vendorgroup": group, "msdyn_description": description, "msdyn_company": company,
                "msdyn_paymentterms": terms[1],
            })
            vendor_groups.append(ref)
        for number in range(1, ACCOUNTS_PER_COMPANY[code] + 1):
            accountnumber = f"{country}-{number:03d}"
            account = Ref("account", seed_id("account", code, accountnumber))
            contacts = []
            for person in range(2):
                contact_code = f"{country}C{number:03d}{person}"
                contact = Ref("contact", seed_id("contact", code, contact_code))
                _insert(sim, "contact", contact.id, {
                    "firstname": rnd.choice(FIRST), "lastname": rnd.choice(LAST),
                    "emailaddress1": f"contact{number}.{person}@{code}.example.com",
                    "telephone1": f"+1 555 {number:03d} {person:04d}", "msdyn_contactpersonid": contact_code,
                    "msdyn_company": company, "parentcustomerid": account, "transactioncurrencyid": currency_ref,
                } | _party_of(code, contact_code))
                contacts.append(contact)
            _insert(sim, "account", account.id, {
                "name": f"{rnd.choice(NAMES)} {rnd.choice(['Retail', 'Holdings', 'Stores', 'Trading'])} {number}",
                "accountnumber": accountnumber, "msdyn_company": company, "transactioncurrencyid": currency_ref,
                "msdyn_customergroupid": groups[number % len(groups)], "msdyn_paymentterm": terms[number % len(terms)],
                "primarycontactid": contacts[0], "customertypecode": 3, "address1_addresstypecode": 2,
                "creditlimit": Decimal(rnd.randrange(1000, 1000000)) + Decimal("0.1234567891"),
                "msdyn_creditlimitismandatory": number % 3 == 0, "creditonhold": False,
                "msdyn_onholdstatus": 192350000,
                "telephone1": f"+1 555 {number:04d}", "emailaddress1": f"info{number}@{code}.example.com",
                "address1_city": rnd.choice(CITIES[country]), "address1_country": country,
                "address1_line1": f"{rnd.randrange(1, 999)} Main Street",
                "address1_postalcode": f"{rnd.randrange(10000, 99999)}",
                "numberofemployees": rnd.randrange(5, 5000),
            } | _party_of(code, accountnumber))
        for number in range(1, PRODUCTS + 1):
            item = f"D{number:04d}"
            _insert(sim, "msdyn_sharedproductdetail", seed_id("msdyn_sharedproductdetail", code, item), {
                "msdyn_itemnumber": item, "msdyn_productnumber": item, "msdyn_name": f"Speaker model {item}",
                "msdyn_searchname": f"SPK{item}", "msdyn_producttype": 192350000, "msdyn_isphantom": False,
                "msdyn_salesprice": Decimal(rnd.randrange(1000, 500000)) / 100 + Decimal("0.0000000001"),
                "msdyn_purchaseprice": Decimal(rnd.randrange(500, 250000)) / 100,
                "msdyn_unitcost": Decimal(rnd.randrange(500, 250000)) / 100, "msdyn_salespricedate": "2026-01-01",
                "msdyn_product": Ref("product", seed_id("product", item)), "msdyn_companyid": company,
            })
        for number in range(1, VENDORS_PER_COMPANY[code] + 1):
            vendor_number = f"V-{country}-{number:03d}"
            _insert(sim, "msdyn_vendor", seed_id("msdyn_vendor", code, vendor_number), {
                "msdyn_vendoraccountnumber": vendor_number,
                "msdyn_vendorname": f"{rnd.choice(NAMES)} Supplies {number}", "msdyn_company": company,
                "msdyn_vendorgroupid": vendor_groups[number % len(vendor_groups)],
                "msdyn_paymenttermid": terms[number % len(terms)], "msdyn_currencycode": currency_ref,
                "msdyn_creditlimit": Decimal(rnd.randrange(1000, 500000)), "msdyn_vendorhold": 192350000,
                "msdyn_addresscity": rnd.choice(CITIES[country]), "msdyn_addresscountryregionid": country,
            })
    _seed_parties(sim)
    sim.db.conn.execute("COMMIT")


# Party model: the F&O simulator's parties (same party numbers), each with its current postal address (the
# postal address collection row too, and the customer address of the seeded account) and its e-mail; F&O also
# has a second, future-dated address and a phone that a first sync brings over. No random draws here, so the
# rows above stay as they were.
PARTIES = [("USMF000001", 192350002, "Contoso Retail (US)", None, None, "US-001"),
           ("USMF000002", 192350002, "Fabrikam Electronics (US)", None, None, "US-002"),
           ("USMFP00001", 192350001, "Ana Bowman", "Ana", "Bowman", None),
           ("USMFP00002", 192350001, "Ben Miller", "Ben", "Miller", None)]


# The seeded accounts and contacts whose party is one of PARTIES (their F&O customer / contact person has that
# PartyNumber), by company and account number / contact person id.
PARTY_OF = {("usmf", "US-001"): "USMF000001", ("usmf", "US-002"): "USMF000002",
            ("usmf", "USC0010"): "USMFP00001", ("usmf", "USC0020"): "USMFP00002"}


def _party_of(company: str, number: str) -> dict[str, Ref]:
    """The party lookup of a seeded account or contact, if it has one of PARTIES (no lookup otherwise)."""
    party = PARTY_OF.get((company, number))
    return {"msdyn_partyid": Ref("msdyn_party", seed_id("msdyn_party", party))} if party else {}


def _seed_parties(sim: Simulator) -> None:
    company = Ref("cdm_company", seed_id("cdm_company", "usmf"))
    for i, (number, party_type, name, first, last, account) in enumerate(PARTIES):
        party = Ref("msdyn_party", seed_id("msdyn_party", number))
        _insert(sim, "msdyn_party", party.id, {
            "msdyn_partynumber": number, "msdyn_partytype": party_type, "msdyn_name": name,
            "msdyn_firstname": first, "msdyn_lastname": last, "msdyn_languageid": "en-us"})
        location = f"{number}-A1"
        collection = Ref("msdyn_postaladdresscollection", seed_id("msdyn_postaladdresscollection", location))
        _insert(sim, "msdyn_postaladdresscollection", collection.id, {
            "msdyn_location": location, "msdyn_description": "Home" if first else "Head office", "msdyn_name": name,
            "msdyn_partyid": party})
        _insert(sim, "msdyn_partypostaladdress", seed_id("msdyn_partypostaladdress", number, location), {
            "msdyn_partynumber": number, "msdyn_locationid": location, "msdyn_name": "Main address",
            "msdyn_street": f"{200 + i} Pine Street", "msdyn_city": "Seattle", "msdyn_zipcode": f"{98100 + i}",
            "msdyn_state": "WA", "msdyn_countryregionid": "USA", "msdyn_purpose": "Home" if first else "Business",
            "msdyn_isprimary": True, "msdyn_validfrom": "2020-01-01T00:00:00Z", "msdyn_partyid": party,
            "msdyn_postaladdresscollectionid": collection})
        _insert(sim, "msdyn_partyelectronicaddress", seed_id("msdyn_partyelectronicaddress", number, f"{number}-E1"), {
            "msdyn_partynumber": number, "msdyn_locationid": f"{number}-E1", "msdyn_name": "E-mail",
            "msdyn_type": 192350002, "msdyn_locator": f"{(last or name.split()[0]).lower()}@party.example",
            "msdyn_purpose": "Business", "msdyn_isprimary": True, "msdyn_ismobile": False, "msdyn_partyid": party})
        if account is not None:
            _insert(sim, "customeraddress", seed_id("customeraddress", "usmf", account, "1"), {
                "name": "Main address", "addressnumber": 1, "addresstypecode": 1, "line1": f"{200 + i} Pine Street",
                "msdyn_locationid": location,
                "city": "Seattle", "postalcode": f"{98100 + i}", "country": "USA",
                "parentid": Ref("account", seed_id("account", "usmf", account))})
        else:
            _insert(sim, "msdyn_contactforparty", seed_id("msdyn_contactforparty", "usmf", f"USC{i - 1:03d}0"), {
                "msdyn_contactforpartynumber": f"USC{i - 1:03d}0", "msdyn_name": name, "msdyn_firstname": first,
                "msdyn_lastname": last, "msdyn_associatedcompanyid": company, "msdyn_contactpartyid": party,
                "msdyn_associatedaccountid": Ref("account", seed_id("account", "usmf", f"US-{i - 1:03d}"))})
