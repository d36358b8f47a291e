"""The dual-write party and global address book solution's plugin, simulated: it is installed in Dataverse with the
solution, so no dual-write map writes these rows. A party postal address written in Dataverse (by a user or by
dual-write's msdyn_partypostaladdresses map) is kept as an Address (customeraddress) row of every account and
contact of that party, one per location and parent: the Address table's key msdyn_locationkey is msdyn_locationid +
parentid ("Party and global address book troubleshooting", the error "A record that has the attribute values
Location ID already exists" raised by that plugin). Which columns the plugin copies is not documented; street, city,
ZIP code, country and name here are [Unconfirmed]."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from devstack.dataverse.schema import Ref

PARTY_ADDRESS = "msdyn_partypostaladdress"
CUSTOMER_ADDRESS = "customeraddress"
LOCATION_KEY = "msdyn_locationkey"
PARENTS = ("account", "contact")  # the rows of a party that show its addresses


def parents_of(party: Ref, rows: Callable[[str], Iterable[tuple[str, dict[str, Any]]]]) -> Iterator[Ref]:
    """The accounts and contacts whose party lookup (msdyn_partyid) is `party`; `rows(table)` yields (id, row)."""
    for table in PARENTS:
        for row_id, row in rows(table):
            linked = row.get("msdyn_partyid")
            if isinstance(linked, Ref) and linked.id == party.id:
                yield Ref(table, row_id)


def customer_address(address: dict[str, Any], parent: Ref) -> dict[str, Any]:
    """The Address row of `parent` for a party postal address row."""
    return {"msdyn_locationid": address.get("msdyn_locationid"), "parentid": parent,
            "name": address.get("msdyn_name"), "line1": address.get("msdyn_street"),
            "city": address.get("msdyn_city"), "postalcode": address.get("msdyn_zipcode"),
            "country": address.get("msdyn_countryregionid")}
