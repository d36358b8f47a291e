"""The party and addresses scenario over the whole local stack (issue 19): a copy of the shipped maps with the party
maps enabled (they ship disabled), its own Azurite tables.

A person customer made in F&O (its party, the customer, two postal addresses, an e-mail) arrives in Dataverse as its
party, a contact, two party postal addresses and an electronic address, each linked to the party; an address edited
in Dataverse flows back to F&O; of two primary addresses, one replacing the other a little ahead, Dataverse shows
the first as primary, and after that instant the validity timer (functions/validity.py, every minute; nobody touches
the rows) makes the second primary and the first not. The instant is real time a little ahead, so the host runs its
own clock; the unit tests (tests/unit/maps/test_party_model.py, tests/unit/sync/test_validity.py) inject one.

With the parties map on, the enabled role maps link their party too (their lookup is active only while 'parties' is
enabled): an organisation customer's account (and its party's postal address among the account's addresses), a
contact person's contact and its 'contact for party' row, a person vendor's vendor row and the contact it becomes."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, eventually, running_stack
from tests.fixtures.azurite import own_tables
from tests.fixtures.devhost import RunningHost

pytestmark = pytest.mark.e2e

MAPS = Path(__file__).parents[2] / "maps"
ENABLED = ("parties", "postal-address-collections", "party-postal-addresses", "party-electronic-addresses",
           "customer-persons", "vendor-persons", "contacts-for-party")
# The second address becomes the primary one this long after it is made (room for a loaded machine to sync both
# addresses before that).
SWITCH_AFTER = timedelta(seconds=75)
# The validity timer ticks every minute: the switch shows in Dataverse by the next tick plus the time to apply it.
SWITCH_SEEN_WITHIN = 150


@pytest.fixture(scope="module")
def maps_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("maps")
    shutil.copytree(MAPS, folder, dirs_exist_ok=True)
    for name in ENABLED:
        path = folder / f"{name}.json"
        data = json.loads(path.read_text())
        assert data["enabled"] is False  # shipped disabled; enabled here only
        data["enabled"] = True
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    return folder


@pytest.fixture(scope="module")
def stack(servicebus_emulator: Any, devhost: Callable[..., RunningHost], maps_copy: Path) -> Iterator[Stack]:
    for azurite in own_tables():
        with running_stack(azurite, servicebus_emulator, devhost, dataverse_flags=(),
                           MAPS_PATH=str(maps_copy)) as running:
            yield running


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(stack: Stack, entity_set: str, body: dict[str, Any]) -> None:
    response = stack.fo.post(entity_set, json=body)
    assert response.status_code == 201, (entity_set, response.text)


def _fno_rows(stack: Stack, entity_set: str, filter_: str) -> list[dict[str, Any]]:
    response = stack.fo.get(entity_set, params={"$filter": filter_, "cross-company": "true"})
    response.raise_for_status()
    return list(response.json()["value"])


def _addresses(stack: Stack, party: str) -> dict[str, dict[str, Any]]:
    rows = stack.rows("msdyn_partypostaladdresses", **{"$filter": f"msdyn_partynumber eq '{party}'"})
    return {row["msdyn_locationid"]: row for row in rows}


def test_a_person_customer_with_its_addresses_syncs_and_a_future_address_becomes_primary(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    party, account = f"PT{tag}", f"PC-{tag}"
    a1, a2, mail = f"{party}-A1", f"{party}-A2", f"{party}-E1"
    switch = datetime.now(UTC).replace(microsecond=0) + SWITCH_AFTER

    # -- made in F&O: the party, the person customer, two postal addresses (one replacing the other), an e-mail
    _post(stack, "PartiesV2", {"PartyNumber": party, "PartyType": "Person", "Name": f"Maria Lopez {tag}",
                               "PersonFirstName": "Maria", "PersonLastName": "Lopez", "LanguageId": "en-us"})
    _post(stack, "CustomersV3", {
        "dataAreaId": "usmf", "CustomerAccount": account, "PartyType": "Person", "PartyNumber": party,
        "PersonFirstName": "Maria", "PersonLastName": "Lopez", "CustomerGroupId": "30", "SalesCurrencyCode": "USD",
        "PrimaryContactEmail": f"maria.{tag.lower()}@example.com", "AddressCity": "Seattle"})
    address = {"PartyNumber": party, "AddressCountryRegionId": "USA", "AddressState": "WA", "Roles": "Home",
               "IsPrimary": "Yes", "IsRoleHome": "Yes"}
    _post(stack, "PartyLocationPostalAddressesV2", {
        **address, "LocationId": a1, "Description": "Home", "AddressStreet": "12 Pine Street",
        "AddressCity": "Seattle", "AddressZipCode": "98101", "ValidFrom": "2020-01-01T00:00:00Z",
        "ValidTo": _iso(switch)})
    _post(stack, "PartyLocationPostalAddressesV2", {
        **address, "LocationId": a2, "Description": "New home", "AddressStreet": "7 Harbor Way",
        "AddressCity": "Tacoma", "AddressZipCode": "98402", "ValidFrom": _iso(switch)})
    _post(stack, "PartyContactsV2", {"PartyNumber": party, "LocationId": mail, "Description": "E-mail",
                                     "Type": "Email", "Locator": f"maria.{tag.lower()}@example.com",
                                     "Purpose": "Business", "IsPrimary": "Yes"})

    # -- arrives in Dataverse: party, contact, both addresses and the e-mail, each linked to the party
    parties = eventually(lambda: stack.rows("msdyn_parties", **{"$filter": f"msdyn_partynumber eq '{party}'"}),
                         timeout=90, what="the party reaching Dataverse")
    party_id = parties[0]["msdyn_partyid"]
    assert (parties[0]["msdyn_partytype"], parties[0]["msdyn_firstname"], parties[0]["msdyn_lastname"]) == (
        192350001, "Maria", "Lopez")
    contacts = eventually(lambda: stack.rows("contacts", **{"$filter": f"msdyn_customeraccount eq '{account}'"}),
                          timeout=90, what="the person customer reaching Dataverse as a contact")
    assert (contacts[0]["firstname"], contacts[0]["lastname"], contacts[0]["emailaddress1"]) == (
        "Maria", "Lopez", f"maria.{tag.lower()}@example.com")
    assert contacts[0]["_msdyn_partyid_value"] == party_id
    assert contacts[0]["_msdyn_company_value"] == stack.company_id("usmf")
    assert stack.account(account) is None  # a person customer is no account
    rows = eventually(lambda: (found := _addresses(stack, party)) and len(found) == 2 and found,
                      timeout=90, what="both postal addresses reaching Dataverse")
    seen_at = datetime.now(UTC)
    assert seen_at < switch, "the addresses took too long to arrive to see them before the switch"
    assert {k: (r["msdyn_street"], r["msdyn_isprimary"], r["_msdyn_partyid_value"]) for k, r in rows.items()} == {
        a1: ("12 Pine Street", True, party_id), a2: ("7 Harbor Way", False, party_id)}
    assert rows[a2]["msdyn_validfrom"].startswith(_iso(switch)[:19])
    # each address looks up its location, which F&O made with it (the 'postal-address-collections' map)
    locations = {c["msdyn_location"]: c for c in stack.rows("msdyn_postaladdresscollections", **{
        "$filter": f"msdyn_location eq '{a1}' or msdyn_location eq '{a2}'"})}
    linked = {k: (locations[k]["msdyn_description"], r["_msdyn_postaladdresscollectionid_value"])
              for k, r in rows.items()}
    assert linked == {
        a1: ("Home", locations[a1]["msdyn_postaladdresscollectionid"]),
        a2: ("New home", locations[a2]["msdyn_postaladdresscollectionid"])}
    emails = eventually(lambda: stack.rows("msdyn_partyelectronicaddresses",
                                           **{"$filter": f"msdyn_locationid eq '{mail}'"}),
                        timeout=60, what="the e-mail reaching Dataverse")
    assert (emails[0]["msdyn_type"], emails[0]["msdyn_locator"], emails[0]["msdyn_isprimary"],
            emails[0]["_msdyn_partyid_value"]) == (192350002, f"maria.{tag.lower()}@example.com", True, party_id)

    # -- an address edited in Dataverse flows back to F&O (its primary flag stays F&O's)
    response = stack.dv.patch(f"msdyn_partypostaladdresses({rows[a2]['msdyn_partypostaladdressid']})",
                              json={"msdyn_street": "9 Harbor Way", "msdyn_zipcode": "98403"})
    assert response.status_code == 204, response.text

    def fno_a2() -> dict[str, Any] | None:
        found = _fno_rows(stack, "PartyLocationPostalAddressesV2", f"LocationId eq '{a2}'")
        return found[0] if found and found[0]["AddressStreet"] == "9 Harbor Way" else None

    edited = eventually(fno_a2, timeout=90, what="the Dataverse edit reaching F&O")
    assert (edited["AddressZipCode"], edited["IsPrimary"]) == ("98403", "Yes")  # not primary *now* is not sent

    # -- the switch: after it, the validity timer (no row touched by anyone) makes the second address primary. Its
    # next tick is at most a minute after the switch; then the change is queued and applied.
    time.sleep(max(0.0, (switch - datetime.now(UTC)).total_seconds()))
    after = eventually(lambda: (found := _addresses(stack, party)) and found[a2]["msdyn_isprimary"]
                       and not found[a1]["msdyn_isprimary"] and found,
                       timeout=SWITCH_SEEN_WITHIN, what="the validity timer making the new address primary")
    assert (after[a1]["msdyn_isprimary"], after[a2]["msdyn_isprimary"]) == (False, True)
    assert after[a2]["msdyn_street"] == "9 Harbor Way"
    flags = {r["LocationId"]: r["IsPrimary"] for r in _fno_rows(stack, "PartyLocationPostalAddressesV2",
                                                                 f"PartyNumber eq '{party}'")}
    assert flags == {a1: "Yes", a2: "Yes"}  # F&O's flags hold for each address's own validity; nothing wrote them
    sent = {e["reason"] for e in stack.activity(map="party-postal-addresses") if e["reason"].startswith("validity:")}
    assert sent == {f"validity: {party}|{a1} stopped being valid at {_iso(switch)}",
                    f"validity: {party}|{a2} became valid at {_iso(switch)}"}, sent


def _party(stack: Stack, number: str, **values: Any) -> str:
    """Make the party in F&O; its Dataverse row id once it has arrived."""
    _post(stack, "PartiesV2", {"PartyNumber": number, "LanguageId": "en-us", **values})
    rows = eventually(lambda: stack.rows("msdyn_parties", **{"$filter": f"msdyn_partynumber eq '{number}'"}),
                      timeout=90, what=f"party {number} reaching Dataverse")
    return str(rows[0]["msdyn_partyid"])


def test_customers_contacts_and_vendors_carry_their_party(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    org, person, vendor_person = f"PO{tag}", f"PP{tag}", f"PV{tag}"
    account, contact_id, vendor = f"OC-{tag}", f"CP{tag}", f"PV-{tag}"
    org_id = _party(stack, org, PartyType="Organization", Name=f"Northwind {tag}", NameAlias="Northwind")
    person_id = _party(stack, person, PartyType="Person", Name=f"Lena Ortiz {tag}", PersonFirstName="Lena",
                       PersonLastName="Ortiz")
    vendor_party_id = _party(stack, vendor_person, PartyType="Person", Name=f"Omar Haddad {tag}",
                             PersonFirstName="Omar", PersonLastName="Haddad")

    # -- an organisation customer: its account in Dataverse has its party lookup set
    _post(stack, "CustomersV3", {
        "dataAreaId": "usmf", "CustomerAccount": account, "PartyType": "Organization", "PartyNumber": org,
        "OrganizationName": f"Northwind {tag}", "CustomerGroupId": "30", "SalesCurrencyCode": "USD"})
    accounts = eventually(lambda: (row := stack.account(account)) and row.get("_msdyn_partyid_value") and [row],
                          timeout=90, what="the customer's account with its party")
    assert (accounts[0]["name"], accounts[0]["_msdyn_partyid_value"]) == (f"Northwind {tag}", org_id)
    # ... and a postal address of its party shows among the account's Addresses (customeraddress): the party and
    # global address book solution's plugin keeps them in step in Dataverse, no map does
    location = f"{org}-A1"
    _post(stack, "PartyLocationPostalAddressesV2", {
        "PartyNumber": org, "LocationId": location, "Description": "Head office", "AddressStreet": "5 Quay Street",
        "AddressCity": "Olympia", "AddressZipCode": "98501", "AddressCountryRegionId": "USA", "AddressState": "WA",
        "Roles": "Business", "IsPrimary": "Yes", "IsRoleBusiness": "Yes", "ValidFrom": "2020-01-01T00:00:00Z"})
    kept = eventually(lambda: stack.rows("customeraddresses", **{"$filter": f"msdyn_locationid eq '{location}'"}),
                      timeout=90, what="the party's postal address among the account's addresses")
    assert [(a["_parentid_value"], a["line1"], a["city"]) for a in kept] == [
        (accounts[0]["accountid"], "5 Quay Street", "Olympia")]

    # -- a contact person of that customer: a contact with its own party, and a 'contact for party' row linking
    # that party to the customer's account
    _post(stack, "ContactPersonsV2", {
        "dataAreaId": "usmf", "ContactPersonId": contact_id, "FirstName": "Lena", "LastName": "Ortiz",
        "AssociatedContactType": "Customer", "AssociatedContactNumber": account,
        "ContactPersonPartyNumber": person})
    links = eventually(lambda: stack.rows("msdyn_contactforparties",
                                          **{"$filter": f"msdyn_contactforpartynumber eq '{contact_id}'"}),
                       timeout=90, what="the contact for party reaching Dataverse")
    assert (links[0]["msdyn_firstname"], links[0]["msdyn_lastname"], links[0]["_msdyn_contactpartyid_value"],
            links[0]["_msdyn_associatedaccountid_value"], links[0]["_msdyn_associatedcompanyid_value"]) == (
        "Lena", "Ortiz", person_id, accounts[0]["accountid"], stack.company_id("usmf"))
    contacts = eventually(lambda: stack.rows("contacts", **{"$filter": f"msdyn_contactpersonid eq '{contact_id}'"}),
                          timeout=90, what="the contact person reaching Dataverse as a contact")
    assert (contacts[0]["_msdyn_partyid_value"], contacts[0]["_parentcustomerid_value"]) == (
        person_id, accounts[0]["accountid"])

    # -- a person vendor: its vendor row and the contact it becomes, both linked to its party
    _post(stack, "VendorsV2", {
        "dataAreaId": "usmf", "VendorAccountNumber": vendor, "VendorPartyType": "Person",
        "VendorPartyNumber": vendor_person, "VendorOrganizationName": f"Omar Haddad {tag}",
        "PersonFirstName": "Omar", "PersonLastName": "Haddad", "VendorGroupId": "10", "CurrencyCode": "USD",
        "PrimaryEmailAddress": f"omar.{tag.lower()}@example.com", "AddressCity": "Spokane"})
    person_contacts = eventually(lambda: stack.rows("contacts", **{
        "$filter": f"msdyn_vendoraccountnumber eq '{vendor}'"}), timeout=90,
        what="the person vendor reaching Dataverse as a contact")
    assert (person_contacts[0]["firstname"], person_contacts[0]["lastname"], person_contacts[0]["emailaddress1"],
            person_contacts[0]["_msdyn_partyid_value"], person_contacts[0]["_msdyn_company_value"]) == (
        "Omar", "Haddad", f"omar.{tag.lower()}@example.com", vendor_party_id, stack.company_id("usmf"))
    vendors = eventually(lambda: stack.rows("msdyn_vendors", **{
        "$filter": f"msdyn_vendoraccountnumber eq '{vendor}'"}), timeout=90, what="the vendor row")
    assert vendors[0]["_msdyn_partyid_value"] == vendor_party_id
