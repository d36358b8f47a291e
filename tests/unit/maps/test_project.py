"""Projection through the shipped maps: directions, transforms, company, lookups, errors."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from core.maps import KeyRef, ProjectionError, project, stable_hash

CUSTOMER = {
    "dataAreaId": "usmf", "CustomerAccount": "US-001", "OrganizationName": "Contoso Retail",
    "CreditLimit": Decimal("25000.1234567891"), "CreditLimitIsMandatory": "Yes", "OnHoldStatus": "Invoice",
    "AddressStreet": "1 Main St", "AddressCity": "Seattle", "AddressZipCode": "98052",
    "AddressCountryRegionId": "USA", "PrimaryContactEmail": "a@contoso.com", "PrimaryContactPhone": "555",
    "CustomerGroupId": "30", "SalesCurrencyCode": "USD", "PaymentTerms": "Net30", "ContactPersonId": "CP-1",
    "PartyType": "Organization", "SalesMemo": "ignored: only written to F&O",
}


def test_customer_to_dataverse(shipped):
    out = shipped.project("customers", "to_dataverse", CUSTOMER)
    assert out["msdyn_company"] == KeyRef("legal-entities", "dataverse", (("cdm_companycode", "USMF"),))
    assert out["accountnumber"] == "US-001"
    assert out["creditlimit"] == Decimal("25000.1234567891")
    assert isinstance(out["creditlimit"], Decimal)
    assert out["msdyn_creditlimitismandatory"] is True
    assert out["msdyn_onholdstatus"] == 192350001
    assert out["customertypecode"] == 3  # constant, F&O has no such field
    assert "description" not in out  # SalesMemo is one-way to F&O
    assert out["msdyn_customergroupid"] == KeyRef(
        "customer-groups", "dataverse", (("msdyn_company.cdm_companycode", "USMF"), ("msdyn_groupid", "30")))
    assert out["transactioncurrencyid"] == KeyRef("currencies", "dataverse", (("isocurrencycode", "USD"),))
    assert out["primarycontactid"] == KeyRef(
        "contacts", "dataverse", (("msdyn_company.cdm_companycode", "USMF"), ("msdyn_contactpersonid", "CP-1")))


def test_customer_round_trip_and_one_way_fields(shipped):
    out = shipped.project("customers", "to_dataverse", CUSTOMER)
    out["description"] = "x" * 1500
    back = shipped.project("customers", "to_fno", out)
    for name in ("dataAreaId", "CustomerAccount", "OrganizationName", "CreditLimit", "CreditLimitIsMandatory",
                 "OnHoldStatus", "CustomerGroupId", "SalesCurrencyCode", "PaymentTerms", "ContactPersonId"):
        assert back[name] == CUSTOMER[name], name
    assert back["SalesMemo"] == "x" * 1000  # fit_length truncates to F&O's 1000 characters
    assert back["LanguageId"] == "en-us" and back["PartyType"] == "Organization"


def test_partial_change_and_cleared_values(shipped):
    out = shipped.project("customers", "to_dataverse",
                          {"dataAreaId": "usmf", "CustomerAccount": "US-001", "CreditLimit": None,
                           "CustomerGroupId": None})
    assert out["creditlimit"] is None
    assert out["msdyn_customergroupid"] is None  # lookup cleared
    assert "name" not in out and "transactioncurrencyid" not in out  # untouched


def test_lookup_from_dataverse_as_mapping(shipped):
    record = {"msdyn_company": {"cdm_companycode": "usmf"}, "msdyn_contactpersonid": "CP-9", "lastname": "Reyes",
              "parentcustomerid_account": {"msdyn_company.cdm_companycode": "USMF", "accountnumber": "US-001"},
              "gendercode": 2}
    out = shipped.project("contacts", "to_fno", record)
    assert out == {"dataAreaId": "usmf", "ContactPersonId": "CP-9", "LastName": "Reyes", "Gender": "Female",
                   "AssociatedContactType": "Customer", "AssociatedContactNumber": "US-001"}


def test_lookup_to_another_company_is_refused(shipped):
    record = {"msdyn_company": "USMF", "msdyn_contactpersonid": "CP-9",
              "parentcustomerid_account": {"msdyn_company.cdm_companycode": "DEMF", "accountnumber": "DE-001"}}
    with pytest.raises(ProjectionError, match=r"map 'contacts', field 'parentcustomerid_account'.*company DEMF"):
        shipped.project("contacts", "to_fno", record)


def test_lookup_by_guid_must_be_resolved_first(shipped):
    with pytest.raises(ProjectionError, match="not a key reference"):
        shipped.project("contacts", "to_fno", {"msdyn_company": "USMF",
                                               "parentcustomerid_account": "6d81597f-0f9f-e711-8122-000d3aa2331c"})


def test_bad_values_name_map_and_field(shipped):
    with pytest.raises(ProjectionError, match=r"map 'customers', field 'CreditLimit'.*more than 10 decimal places"):
        shipped.project("customers", "to_dataverse", {**CUSTOMER, "CreditLimit": Decimal("1.00000000001")})
    with pytest.raises(ProjectionError, match=r"field 'CreditLimitIsMandatory'.*NoYes"):
        shipped.project("customers", "to_dataverse", {**CUSTOMER, "CreditLimitIsMandatory": "Si"})
    with pytest.raises(ProjectionError, match=r"field 'CreditLimit'.*float"):
        shipped.project("customers", "to_dataverse", {**CUSTOMER, "CreditLimit": 1.5})


def test_lookups_need_the_other_maps(shipped):
    with pytest.raises(ProjectionError, match="needs map 'customer-groups'"):
        project(shipped["customers"], "to_dataverse", CUSTOMER)


def test_product_values_to_dataverse(shipped):
    out = shipped.project("released-products", "to_dataverse", {
        "dataAreaId": "usmf", "ItemNumber": "A0001", "SalesPriceDate": "2024-03-01T00:00:00Z",
        "ProductType": "Service", "IsPhantom": "No", "SalesPrice": "12.5"})
    assert out["msdyn_salespricedate"] == date(2024, 3, 1)  # F&O sends dates as midnight DateTimeOffsets
    assert out["msdyn_producttype"] == 192350001
    assert out["msdyn_isphantom"] is False
    assert out["msdyn_salesprice"] == Decimal("12.5")
    assert out["msdyn_companyid"] == KeyRef("legal-entities", "dataverse", (("cdm_companycode", "USMF"),))
    assert shipped.project("released-products", "to_fno", {"msdyn_salespricedate": date(2024, 1, 1)}) == {}


def test_hash_is_stable_across_representations():
    a = {"creditlimit": Decimal("25000"), "name": "Contoso", "modifiedon": datetime(2024, 1, 1, 10, tzinfo=UTC),
         "ref": KeyRef("currencies", "dataverse", (("isocurrencycode", "USD"),))}
    b = {"ref": KeyRef("currencies", "dataverse", (("isocurrencycode", "USD"),)), "name": "Contoso",
         "modifiedon": datetime.fromisoformat("2024-01-01T11:00:00+01:00"),
         "creditlimit": Decimal("25000.0000000000")}
    assert stable_hash(a) == stable_hash(b)
    assert stable_hash(a) != stable_hash({**a, "creditlimit": Decimal("25000.0000000001")})
    assert stable_hash({"x": "1"}) != stable_hash({"x": Decimal(1)})
    assert stable_hash({"x": None}) != stable_hash({})
    # A fixed value guards against accidental changes of the canonical form (stored hashes).
    fixed = "fa2c282b80a1cca32af815b01b36599b1859d6536eb6206f709a89110ccca352"
    assert stable_hash({"n": Decimal("1.50"), "s": "é"}) == fixed
    assert stable_hash({"s": "é", "n": Decimal("1.5")}) == fixed
    with pytest.raises(ValueError, match="float"):
        stable_hash({"x": 1.5})
