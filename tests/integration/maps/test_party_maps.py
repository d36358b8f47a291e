"""The party and address maps against the live metadata of both simulators (over HTTP), with the maps they
reference, and the seeded party rows read through them: both sides' rows fit the maps."""

import json
import uuid
from pathlib import Path

import httpx
import pytest

from core.cli.main import main
from core.connectors.metadata import fetch_dataverse_schemas, fetch_fno_schemas
from core.maps import check_metadata, load_maps

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[3] / "maps"
PARTY = ["parties", "postal-address-collections", "party-postal-addresses", "party-electronic-addresses",
         "customer-persons", "vendor-persons", "contacts-for-party"]
REFERENCED = ["legal-entities", "currencies", "payment-terms", "customer-groups", "vendor-groups", "customers",
              "contacts", "vendors"]


def _paths(*names: str) -> list[str]:
    return [str(SHIPPED / f"{name}.json") for name in names]


def _cli(dataverse, fno, *paths: str) -> int:
    return main(["maps", "validate", *paths, "--dataverse-url", dataverse.url, "--fno-url", fno.url,
                 "--dataverse-token", dataverse.token(), "--fno-token", fno.token()])


def test_party_maps_match_both_simulators(dataverse, fno, capsys):
    assert _cli(dataverse, fno, *_paths(*PARTY, *REFERENCED)) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"ok: {len(PARTY) + len(REFERENCED)} map(s) against live metadata" in out


def test_party_maps_ship_disabled_with_their_scenario():
    for name in PARTY:
        data = json.loads((SHIPPED / f"{name}.json").read_text())
        assert data["enabled"] is False, name
        assert data["description"].startswith("Scenario: party and addresses."), name


async def test_a_wrong_party_map_is_caught_by_live_metadata(dataverse, fno, tmp_path):
    data = json.loads((SHIPPED / "party-postal-addresses.json").read_text())
    by_fno = {f["fno"]: f for f in data["fields"]}
    by_fno["ValidTo"]["fno"] = "ValidUntil"  # no such F&O field (also the validity's valid_to)
    data["validity"]["valid_to"] = "ValidUntil"
    by_fno["AddressCity"]["dataverse"] = "msdyn_town"  # no such column
    data["lookups"][0]["dataverse"] = "msdyn_party"  # the table, not the lookup
    path = tmp_path / "party-postal-addresses.json"
    path.write_text(json.dumps(data))
    loaded = load_maps([*(SHIPPED / f"{n}.json" for n in ("parties", "postal-address-collections")), path])
    assert loaded.problems == []
    async with httpx.AsyncClient(timeout=30) as client:
        tables = await fetch_dataverse_schemas(client, dataverse.base_url, [
            "msdyn_partypostaladdress", "msdyn_party", "msdyn_postaladdresscollection"], dataverse.token())
        entities = await fetch_fno_schemas(client, fno.url, fno.token())
    problems = {(p.map, p.field, p.message.split(":")[0]) for p in check_metadata(loaded.maps, entities, tables)
                if p.severity == "error"}
    assert problems == {
        ("party-postal-addresses", "ValidUntil", "unknown field"),
        ("party-postal-addresses", "msdyn_town", "unknown field"),
        ("party-postal-addresses", "msdyn_party", "unknown field"),
    }, problems


def test_seeded_parties_link_up_on_both_sides(dataverse, fno):
    """The seeds agree on the party numbers, so a first sync matches rows rather than duplicating them."""
    with httpx.Client(base_url=fno.data_url, headers=fno.headers(), timeout=30) as odata, dataverse.client() as api:
        fno_parties = {p["PartyNumber"]: p for p in odata.get("PartiesV2").json()["value"]}
        dv_parties = {p["msdyn_partynumber"]: p for p in api.get("msdyn_parties").json()["value"]}
        assert set(dv_parties) == {"USMF000001", "USMF000002", "USMFP00001", "USMFP00002"}
        assert set(dv_parties) < set(fno_parties)  # F&O has every role's party; a first sync brings the rest
        # Every customer, vendor and contact person of F&O is a role of a party PartiesV2 has (rows other tests of
        # the session made without a party number are left out).
        roles = {(entity, field): {row[field] for row in odata.get(entity, params={
            "cross-company": "true", "$select": field}).json()["value"] if row[field]}
            for entity, field in (("CustomersV3", "PartyNumber"), ("VendorsV2", "VendorPartyNumber"),
                                  ("ContactPersonsV2", "ContactPersonPartyNumber"))}
        for (entity, field), numbers in roles.items():
            assert numbers and numbers <= set(fno_parties), (entity, field, numbers - set(fno_parties))
        # ... and Dataverse's seeded account and contact of those parties carry the party lookup.
        accounts = api.get("accounts", params={"$filter": "accountnumber eq 'US-001'"}).json()["value"]
        assert [a["_msdyn_partyid_value"] for a in accounts] == [dv_parties["USMF000001"]["msdyn_partyid"]]
        person = api.get("contacts", params={"$filter": "msdyn_contactpersonid eq 'USC0010'"}).json()["value"]
        assert [c["_msdyn_partyid_value"] for c in person] == [dv_parties["USMFP00001"]["msdyn_partyid"]]
        addresses = odata.get("PartyLocationPostalAddressesV2",
                              params={"$filter": "PartyNumber eq 'USMFP00001'"}).json()["value"]
        assert sorted((a["LocationId"], a["IsPrimary"], a["ValidFrom"][:10]) for a in addresses) == [
            ("USMFP00001-A1", "Yes", "2020-01-01"), ("USMFP00001-A2", "Yes", "2030-01-01")]
        contacts = odata.get("PartyContactsV2", params={"$filter": "PartyNumber eq 'USMFP00001'"}).json()["value"]
        assert {c["Type"] for c in contacts} == {"Email", "Phone"}
        customer = odata.get("CustomersV3", params={"$filter": "PartyNumber eq 'USMF000001'",
                                                    "cross-company": "true"}).json()["value"]
        assert [c["CustomerAccount"] for c in customer] == ["US-001"]
        person = odata.get("ContactPersonsV2", params={"$filter": "ContactPersonPartyNumber eq 'USMFP00001'",
                                                       "cross-company": "true"}).json()["value"]
        assert [c["ContactPersonId"] for c in person] == ["USC0010"]
        dv_address = api.get("msdyn_partypostaladdresses", params={
            "$filter": "msdyn_locationid eq 'USMFP00001-A1'"}).json()["value"]
        assert [a["_msdyn_partyid_value"] for a in dv_address] == [dv_parties["USMFP00001"]["msdyn_partyid"]]


def test_a_party_postal_address_is_kept_as_an_address_of_the_partys_account(dataverse):
    """The party and global address book solution's plugin (simulated): a party postal address written in Dataverse
    becomes an Address (customeraddress) of each account and contact of the party, one per location and parent."""
    location = f"USMF000001-T{uuid.uuid4().hex[:6].upper()}"
    with dataverse.client() as api:
        party = api.get("msdyn_parties", params={"$filter": "msdyn_partynumber eq 'USMF000001'"}).json()["value"][0]
        account = api.get("accounts", params={"$filter": "accountnumber eq 'US-001'"}).json()["value"][0]
        created = api.post("msdyn_partypostaladdresses", json={
            "msdyn_partynumber": "USMF000001", "msdyn_locationid": location, "msdyn_name": "Warehouse",
            "msdyn_street": "1 Dock Road", "msdyn_city": "Everett", "msdyn_zipcode": "98201",
            "msdyn_countryregionid": "USA", "msdyn_partyid@odata.bind": f"msdyn_parties({party['msdyn_partyid']})"},
            headers={"Prefer": "return=representation"})
        assert created.status_code == 201, created.text

        def addresses() -> list[tuple[str, str, str, str]]:
            rows = api.get("customeraddresses", params={"$filter": f"msdyn_locationid eq '{location}'"}).json()["value"]
            return [(r["_parentid_value"], r["name"], r["line1"], r["city"]) for r in rows]

        assert addresses() == [(account["accountid"], "Warehouse", "1 Dock Road", "Everett")]
        address_id = created.json()["msdyn_partypostaladdressid"]
        edited = api.patch(f"msdyn_partypostaladdresses({address_id})", json={"msdyn_street": "3 Dock Road"})
        assert edited.status_code == 204, edited.text
        assert addresses() == [(account["accountid"], "Warehouse", "3 Dock Road", "Everett")]  # the same row, updated


def test_a_party_postal_address_makes_its_location_in_fno(fno):
    """F&O keeps the location (LogisticsLocation) apart: the first party postal address of a location id makes it, and
    the address's description is the location's (the 'postal-address-collections' map syncs it)."""
    location = f"USMF000002-T{uuid.uuid4().hex[:6].upper()}"
    with httpx.Client(base_url=fno.data_url, headers=fno.headers(), timeout=30) as odata:
        seeded = odata.get("CDSPostalAddressLocations('USMFP00001-A2')").json()
        assert (seeded["LocationId"], seeded["Description"]) == ("USMFP00001-A2", "New main address")
        made = odata.post("PartyLocationPostalAddressesV2", json={
            "PartyNumber": "USMF000002", "LocationId": location, "Description": "Dock", "AddressStreet": "1 Pier",
            "AddressCity": "Tacoma", "AddressCountryRegionId": "USA", "IsPrimary": "No",
            "ValidFrom": "2020-01-01T00:00:00Z"})
        assert made.status_code == 201, made.text
        assert odata.get(f"CDSPostalAddressLocations('{location}')").json()["Description"] == "Dock"
        renamed = odata.patch(f"PartyLocationPostalAddressesV2(PartyNumber='USMF000002',LocationId='{location}')",
                              json={"Description": "Loading dock"})
        assert renamed.status_code == 204, renamed.text
        assert odata.get(f"CDSPostalAddressLocations('{location}')").json()["Description"] == "Loading dock"
