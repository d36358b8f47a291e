"""Filter parsing (both syntaxes), evaluation and rendering back to $filter."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.maps.filters import (
    AnyOf,
    Between,
    Comparison,
    EnumSymbol,
    FilterError,
    FilterSyntaxError,
    StringCall,
    evaluate,
    filter_fields,
    parse_filter,
    render,
)

SAME_FILTERS = [
    ('((PartyType == "Organization"))', "PartyType eq 'Organization'"),
    ("((numberofemployees > 1000) && (numberofemployees <= 2000))",
     "numberofemployees gt 1000 and numberofemployees le 2000"),
    ("(accounttype == '3')", "accounttype eq '3'"),
    ('((CurrencyCode != "999"))', "CurrencyCode ne '999'"),
    ('(A == 1) || !(B == 2)', "A eq 1 or not (B eq 2)"),
    ("(CustTable.Blocked == CustVendorBlocked::No)",
     "Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'"),
]


@pytest.mark.parametrize(("range_syntax", "odata"), SAME_FILTERS)
def test_both_syntaxes_parse_to_the_same_tree(range_syntax, odata):
    assert parse_filter(range_syntax) == parse_filter(odata)


def test_literals_and_functions():
    node = parse_filter("contains(name,'O''Brien') and creditlimit ge 25000.50 and modifiedon lt 2024-01-01T00:00:00Z "
                        "and parentid eq null and active eq true")
    assert node.items == (
        StringCall("contains", "name", "O'Brien"),
        Comparison("creditlimit", "ge", Decimal("25000.50")),
        Comparison("modifiedon", "lt", datetime(2024, 1, 1, tzinfo=UTC)),
        Comparison("parentid", "eq", None),
        Comparison("active", "eq", True),
    )
    assert filter_fields(node) == {"name", "creditlimit", "modifiedon", "parentid", "active"}


def test_enum_literal_and_lists_and_ranges():
    assert parse_filter("IsPhantom eq Microsoft.Dynamics.DataEntities.NoYes'No'") == Comparison(
        "IsPhantom", "eq", EnumSymbol("No", "NoYes"))
    assert parse_filter('(PartyType == "Organization", "Person")') == AnyOf("PartyType", ("Organization", "Person"))
    assert parse_filter("(Blocked == CustVendorBlocked::No..CustVendorBlocked::All)") == Between(
        "Blocked", EnumSymbol("No", "CustVendorBlocked"), EnumSymbol("All", "CustVendorBlocked"))


@pytest.mark.parametrize(("text", "message"), [
    ('((PartyType == "Organization")', r"expected '\)'"),
    ("name eq", "expected a value"),
    ("name like 'x'", "expected a comparison operator"),
    ("primarycontactid/fullname eq 'x'", "nested lookup"),
    ("substringof('x',name)", "unsupported function"),
    ("", "empty filter"),
    ("a eq 1 b", "unexpected text"),
    ("a eq 'x' ; drop", "unexpected character"),
])
def test_syntax_errors_name_the_problem(text, message):
    with pytest.raises(FilterSyntaxError, match=message):
        parse_filter(text)


def test_evaluation():
    record = {"PartyType": "Organization", "CreditLimit": Decimal("100.5"), "name": "Contoso Retail",
              "parentid": None, "Blocked": "Invoice", "active": True}
    assert evaluate(parse_filter('((PartyType == "organization"))'), record)  # case-insensitive like the servers
    assert not evaluate(parse_filter('PartyType ne "Organization"'), record)
    assert evaluate(parse_filter("CreditLimit gt 100 and CreditLimit le 100.5"), record)
    text_functions = "startswith(name,'contoso') and contains(name,'RET') and endswith(name,'ail')"
    assert evaluate(parse_filter(text_functions), record)
    assert evaluate(parse_filter("parentid eq null and not (name eq null)"), record)
    assert not evaluate(parse_filter("parentid gt 3"), record)
    assert evaluate(parse_filter("Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'Invoice'"), record)
    assert evaluate(parse_filter("(Blocked == No, Invoice)"), record)
    assert evaluate(parse_filter("active eq true or CreditLimit lt 0"), record)
    members = {"CustVendorBlocked": ["No", "Invoice", "All", "Payment"]}
    ranged = parse_filter("(Blocked == CustVendorBlocked::No..CustVendorBlocked::Invoice)")
    assert evaluate(ranged, record, members)
    assert not evaluate(ranged, {"Blocked": "All"}, members)


def test_evaluation_errors_are_clear():
    with pytest.raises(FilterError, match="no value for filter field 'PartyType'"):
        evaluate(parse_filter("PartyType eq 'Organization'"), {})
    with pytest.raises(FilterError, match="'AssociatedContactType'"):
        evaluate(parse_filter("(AssociatedContactType = 1)"), {"AssociatedContactType": "Customer"})
    with pytest.raises(FilterError, match="needs the members of enum CustVendorBlocked"):
        evaluate(parse_filter("(Blocked == CustVendorBlocked::No..CustVendorBlocked::All)"), {"Blocked": "No"})


@pytest.mark.parametrize("text", [
    "PartyType eq 'Organization'",
    "customertypecode eq 3",
    "IsPhantom eq Microsoft.Dynamics.DataEntities.NoYes'No'",
    "not (a eq null) or contains(name,'x') and b ne 1.50",
    "(a eq 1 or b eq 2) and c eq 'it''s'",
    "d ge 2024-01-01 and t lt 2024-01-01T10:00:00Z",
    '((PartyType == "Organization", "Person"))',
    "((numberofemployees > 1000) && (numberofemployees <= 2000))",
])
def test_render_round_trip(text):
    node = parse_filter(text)
    rendered = render(node)
    again = parse_filter(rendered)
    assert render(again) == rendered
    if not isinstance(node, AnyOf):
        assert again == node


def test_render_for_fno_uses_wildcards_and_enum_types():
    node = parse_filter("contains(OrganizationName,'retail') and PartyType == Organization")
    assert render(node, "fno", enum_types={"PartyType": "DirPartyBaseType"}) == (
        "OrganizationName eq '*retail*' and "
        "PartyType eq Microsoft.Dynamics.DataEntities.DirPartyBaseType'Organization'")
    ranged = parse_filter("(Blocked == CustVendorBlocked::No..CustVendorBlocked::Invoice)")
    assert render(ranged, "fno", enum_members={"CustVendorBlocked": ["No", "Invoice", "All"]}) == (
        "Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'No' or "
        "Blocked eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'Invoice'")
    inside_and = parse_filter("(Blocked == No, Invoice) && (Name != null)")
    assert render(inside_and) == "(Blocked eq 'No' or Blocked eq 'Invoice') and Name ne null"
