"""Reference-data scenarios over the whole local stack (issue 19): a copy of the shipped maps with the
finance-reference-data and product-master scenarios' maps enabled (they ship disabled), its own Azurite tables.
An exchange rate created in F&O reaches Dataverse with all 10 decimals; a scenario's initial sync runs its maps in
the order the engine expands it to, and carries a product's unit conversion looking up its product and units (units in
their unit groups) and a product master (a product family) with its two variants, their colors, sizes and
styles, and the dimension values the master may take."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack, eventually, running_stack
from tests.fixtures.azurite import own_tables
from tests.fixtures.devhost import RunningHost

pytestmark = pytest.mark.e2e

MAPS = Path(__file__).parents[2] / "maps"
RUNS = "/api/manage/v1/sync/runs"
ENABLED = ("finance-reference-data", "product-master")
RATES = "ExchangeRatesCDSEntity"


def _scenario_maps(folder: Path) -> set[str]:
    scenarios = json.loads((folder / "scenarios" / "scenarios.json").read_text())["scenarios"]
    by_name = {s["name"]: s for s in scenarios}
    names: set[str] = set()

    def add(name: str) -> None:
        names.update(by_name[name]["maps"])
        for required in by_name[name].get("requires", []):
            add(required)

    for name in ENABLED:
        add(name)
    return names


@pytest.fixture(scope="module")
def maps_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("maps")
    shutil.copytree(MAPS, folder, dirs_exist_ok=True)
    for name in _scenario_maps(folder):
        path = folder / f"{name}.json"
        data = json.loads(path.read_text())
        data["enabled"] = True
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    return folder


@pytest.fixture(scope="module")
def stack(servicebus_emulator: Any, devhost: Callable[..., RunningHost], maps_copy: Path) -> Iterator[Stack]:
    for azurite in own_tables():
        with running_stack(
            azurite, servicebus_emulator, devhost, dataverse_flags=(), MAPS_PATH=str(maps_copy)
        ) as running:
            # running_stack waits for the first activation only: a row made before its entity's activation raises no
            # event (F&O sends events of active ones only), so wait for the whole deployment's
            eventually(lambda: _activated(running, RATES), timeout=120,
                       what="the F&O activations of the exchange rates")
            yield running


def _activated(stack: Stack, entity_set: str) -> bool:
    answer = httpx.get(f"{stack.fno.admin_url}activations", timeout=10).json()
    active = answer.get("value", answer) if isinstance(answer, dict) else answer
    return any(entity_set in str(a.get("eventId", "")) and a.get("active", True) for a in active)


def exact_rows(stack: Stack, entity_set: str, filter_: str) -> list[dict[str, Any]]:
    """Dataverse rows with their decimals as the wire has them (Decimal, never float)."""
    response = stack.dv.get(entity_set, params={"$filter": filter_})
    response.raise_for_status()
    return list(json.loads(response.text, parse_float=Decimal)["value"])


def scenario(stack: Stack, name: str) -> dict[str, Any]:
    response = stack.admin.get("/api/manage/v1/scenarios")
    response.raise_for_status()
    body = response.json()
    assert body["problem"] is None, body
    return next(s for s in body["scenarios"] if s["name"] == name)


def test_the_scenarios_route_lists_the_bundles_with_their_maps_enabled(stack: Stack) -> None:
    finance = scenario(stack, "finance-reference-data")
    assert finance["disabled"] == []
    assert (
        finance["maps"].index("legal-entities")
        < finance["maps"].index("payment-terms")
        < finance["maps"].index("customer-groups")
    )
    assert "exchange-rates" in finance["maps"]
    assert scenario(stack, "organisation")["disabled"] == ["operating-units", "sites", "warehouses"]


def _create_rate(stack: Stack, valid_from: str, valid_to: str, rate: str) -> None:
    response = stack.fo.post(
        RATES,
        content=json.dumps(
            {
                "ExchangeRateTypeName": "Budget",
                "FromCurrencyCode": "EUR",
                "ToCurrencyCode": "GBP",
                "Rate": rate,
                "ValidFrom": valid_from,
                "ValidTo": valid_to,
            }
        ),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


def _budget_rates(stack: Stack, count: int) -> list[dict[str, Any]] | None:
    rows = exact_rows(
        stack, "msdyn_currencyexchangerates",
        "msdyn_exchangeratetypename eq 'Budget' and msdyn_fromcurrencycode eq 'EUR' and msdyn_tocurrencycode eq 'GBP'",
    )
    return sorted(rows, key=lambda r: r["msdyn_validfrom"]) if len(rows) >= count else None


def _currency_id(stack: Stack, code: str) -> str:
    rows = exact_rows(stack, "transactioncurrencies", f"isocurrencycode eq '{code}'")
    assert len(rows) == 1, rows
    return str(rows[0]["transactioncurrencyid"])


def test_an_exchange_rate_created_in_fno_arrives_with_all_ten_decimals(stack: Stack) -> None:
    _create_rate(stack, "2026-07-01", "2026-09-30", "0.8567891234")
    rows = eventually(lambda: _budget_rates(stack, 1), timeout=90, what="the exchange rate reaching Dataverse")
    assert len(rows) == 1
    assert rows[0]["msdyn_exchangerate"] == Decimal("0.8567891234")
    assert str(rows[0]["msdyn_exchangerate"]).split(".")[1] == "8567891234"
    assert rows[0]["msdyn_tocurrencycode"] == "GBP"
    assert rows[0]["msdyn_validfrom"] == "2026-07-01"


def test_two_rates_of_one_pair_with_different_start_dates_arrive_as_two_rows(stack: Stack) -> None:
    """ValidFrom is part of both keys: a second start date is a second row (a dated history), not an update of the
    first; each row keeps its 10 decimals and looks its currencies up in transactioncurrency, codes kept too."""
    if _budget_rates(stack, 1) is None:  # run alone: the first rate comes from the test above
        _create_rate(stack, "2026-07-01", "2026-09-30", "0.8567891234")
    _create_rate(stack, "2026-10-01", "2026-12-31", "0.8612345679")
    rows = eventually(lambda: _budget_rates(stack, 2), timeout=90, what="both dated rates reaching Dataverse")
    assert [(r["msdyn_validfrom"], r["msdyn_validto"], r["msdyn_exchangerate"]) for r in rows] == [
        ("2026-07-01", "2026-09-30", Decimal("0.8567891234")),
        ("2026-10-01", "2026-12-31", Decimal("0.8612345679")),
    ]
    assert len({r["msdyn_currencyexchangerateid"] for r in rows}) == 2
    eur, gbp = _currency_id(stack, "EUR"), _currency_id(stack, "GBP")
    for row in rows:
        assert (row["_msdyn_fromcurrency_value"], row["_msdyn_tocurrency_value"]) == (eur, gbp)
        assert (row["msdyn_fromcurrencycode"], row["msdyn_tocurrencycode"]) == ("EUR", "GBP")


def test_initial_sync_copies_the_seeded_dated_history_of_a_pair_as_one_row_per_start_date(stack: Stack) -> None:
    """Initial sync reads and matches rows by key in bulk (a `$filter` of keys on each side): the date key part is
    sent as each service's date literal there too, so F&O's two USD -> EUR rates (seed) become two rows."""
    response = stack.admin.post(RUNS, json={"kind": "initial", "maps": ["exchange-rates"]})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    def done() -> dict[str, Any] | None:
        run = stack.admin.get(f"{RUNS}/{run_id}").json()
        return run if run["status"] in ("completed", "failed", "cancelled") else None

    run = eventually(done, timeout=120, what="the exchange-rates initial sync finishing")
    assert run["status"] == "completed" and all(m["failed"] == 0 for m in run["maps"]), run
    rows = exact_rows(stack, "msdyn_currencyexchangerates",
                      "msdyn_exchangeratetypename eq 'Default' and msdyn_fromcurrencycode eq 'USD' and "
                      "msdyn_tocurrencycode eq 'EUR'")
    assert sorted((r["msdyn_validfrom"], r["msdyn_exchangerate"]) for r in rows) == [
        ("2026-01-01", Decimal("0.9212345678")), ("2026-07-01", Decimal("0.9301234567"))]


def test_a_scenario_initial_sync_runs_its_maps_in_order_and_carries_a_unit_conversion(stack: Stack) -> None:
    expanded = scenario(stack, "product-master")["maps"]
    assert expanded.index("legal-entities") < expanded.index("released-products")  # the company first
    response = stack.admin.post(RUNS, json={"kind": "initial", "maps": expanded})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    def done() -> dict[str, Any] | None:
        run = stack.admin.get(f"{RUNS}/{run_id}").json()
        return run if run["status"] in ("completed", "failed", "cancelled") else None

    run = eventually(done, timeout=240, what="the product-master run finishing")
    assert run["status"] == "completed", run
    assert [m["map"] for m in run["maps"]] == expanded
    assert all(m["failed"] == 0 for m in run["maps"]), run["maps"]
    # Units sit in a unit group per F&O unit class, each group with its base unit (dual-write's plugin).
    units = {u["msdyn_symbol"]: u for u in exact_rows(stack, "uoms", "msdyn_symbol ne null")}
    assert {"ea", "box", "kg"} <= set(units)
    assert units["kg"]["msdyn_decimalprecision"] == 3
    groups = {g["uomscheduleid"]: g for g in exact_rows(stack, "uomschedules", "name ne null")}
    assert groups[units["ea"]["_uomscheduleid_value"]]["name"] == "Quantity"
    assert units["box"]["_uomscheduleid_value"] == units["ea"]["_uomscheduleid_value"]
    assert groups[units["kg"]["_uomscheduleid_value"]]["name"] == "Mass"
    base = exact_rows(stack, "uoms", f"uomid eq {units['ea']['_baseuom_value']}")
    assert [(b["isschedulebaseuom"], b["_uomscheduleid_value"]) for b in base] == [
        (True, units["ea"]["_uomscheduleid_value"])]
    # A conversion looks up its product (all products) and both units; its factor keeps 10 decimals.
    products = {p["msdyn_productnumber"]: p["msdyn_globalproductid"]
                for p in exact_rows(stack, "msdyn_globalproducts", "msdyn_productnumber ne null")}
    assert {"D0001", "D0100"} <= set(products)
    conversions = exact_rows(stack, "msdyn_productspecificunitofmeasureconversions", "msdyn_productnumber eq 'D0001'")
    assert [
        (c["_msdyn_globalproduct_value"], c["_msdyn_fromunit_value"], c["_msdyn_tounit_value"], c["msdyn_factor"],
         c["msdyn_numerator"])
        for c in conversions
    ] == [(products["D0001"], units["box"]["uomid"], units["ea"]["uomid"], Decimal("12"), 12)]
    categories = exact_rows(stack, "msdyn_productcategories", "msdyn_categoryhierarchyname eq 'Retail'")
    assert {(c["msdyn_name"], c["msdyn_parentcategoryname"]) for c in categories} >= {("Speakers", "Audio")}
    # Product master D0100: a product family with a conversion, and two variants pointing to it, each with its color
    # and size looked up.
    assert [
        (c["_msdyn_globalproduct_value"], c["_msdyn_fromunit_value"], c["msdyn_factor"])
        for c in exact_rows(stack, "msdyn_productspecificunitofmeasureconversions", "msdyn_productnumber eq 'D0100'")
    ] == [(products["D0100"], units["box"]["uomid"], Decimal("6"))]
    masters = exact_rows(stack, "products", "productnumber eq 'D0100'")
    assert [(m["name"], m["productstructure"], m["_parentproductid_value"]) for m in masters] == [("T-shirt", 2, None)]
    colors = {
        c["msdyn_productcolorid"]: c["msdyn_name"]
        for c in exact_rows(stack, "msdyn_productcolors", "msdyn_name ne null")
    }
    sizes = {
        c["msdyn_productsizeid"]: c["msdyn_name"] for c in exact_rows(stack, "msdyn_productsizes", "msdyn_name ne null")
    }
    styles = {
        s["msdyn_productstyleid"]: s["msdyn_productstyle"]
        for s in exact_rows(stack, "msdyn_productstyles", "msdyn_productstyle ne null")
    }
    configurations = {
        c["msdyn_productconfigurationid"]: c["msdyn_productconfiguration"]
        for c in exact_rows(stack, "msdyn_productconfigurations", "msdyn_productconfiguration ne null")
    }
    assert {"Standard", "Premium"} <= set(configurations.values())
    # Each variant carries its four dimensions; the T-shirt uses no configuration, so that lookup stays empty.
    variants = exact_rows(stack, "products", f"_parentproductid_value eq {masters[0]['productid']}")
    assert sorted(
        (v["productnumber"], v["productstructure"], colors[v["_msdyn_productcolor_value"]],
         sizes[v["_msdyn_productsize_value"]], styles[v["_msdyn_productstyle_value"]],
         v["_msdyn_productconfiguration_value"])
        for v in variants
    ) == [("D0100-BLA-M", 1, "Black", "M", "Crew", None), ("D0100-WHI-M", 1, "White", "M", "VNeck", None)]
    # The dimension values the master may take, each looking up the master (all products) and its value.
    values: dict[str, dict[str, int]] = {d: {} for d in ("color", "size", "style", "configuration")}
    names = {"color": colors, "size": sizes, "style": styles, "configuration": configurations}
    for dimension, found in values.items():
        for row in exact_rows(stack, f"msdyn_sharedproduct{dimension}s", "msdyn_productmasternumber eq 'D0100'"):
            assert row["_msdyn_globalproduct_value"] == products["D0100"], row
            found[names[dimension][row[f"_msdyn_product{dimension}_value"]]] = row["msdyn_displaysequencenumber"]
    assert values == {"color": {"Black": 1, "White": 2}, "size": {"M": 1, "L": 2}, "style": {"Crew": 1, "VNeck": 2},
                      "configuration": {}}


def test_a_scenario_of_disabled_maps_is_copied_once_by_initial_sync(stack: Stack) -> None:
    """What `dualwrite sync initial --scenario organisation` does before the maps are turned on: the run copies the
    seeded rows (sites before the warehouses that look them up), though nothing keeps them in sync yet."""
    organisation = scenario(stack, "organisation")
    assert organisation["disabled"] == ["operating-units", "sites", "warehouses"]
    assert organisation["maps"].index("sites") < organisation["maps"].index("warehouses")
    response = stack.admin.post(RUNS, json={"kind": "initial", "maps": organisation["maps"]})
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    def done() -> dict[str, Any] | None:
        run = stack.admin.get(f"{RUNS}/{run_id}").json()
        return run if run["status"] in ("completed", "failed", "cancelled") else None

    run = eventually(done, timeout=240, what="the organisation run finishing")
    assert run["status"] == "completed", run
    assert [m["map"] for m in run["maps"]] == organisation["maps"]
    sites = {
        r["msdyn_operationalsiteid"]: r["msdyn_siteid"]
        for r in exact_rows(stack, "msdyn_operationalsites", "msdyn_siteid ne null")
    }
    warehouses = exact_rows(stack, "msdyn_warehouses", f"_msdyn_company_value eq {stack.company_id('USMF')}")
    assert sorted((w["msdyn_warehouseidentifier"], sites[w["_msdyn_operationalsite_value"]]) for w in warehouses) == [
        ("11", "1"),
        ("12", "1"),
        ("21", "2"),
    ]
    # Operating units land where Microsoft's template puts them: the table legal entities share, by party number.
    units = exact_rows(stack, "msdyn_internalorganizations", "msdyn_partynumber eq '000000102'")
    assert [(u["msdyn_name"], u["msdyn_namealias"], u["msdyn_languageid"], u["msdyn_type"]) for u in units] == [
        ("Contoso Audio", "Audio", "en-us", 806380005)]


def test_item_tax_groups_and_vendor_group_payment_terms_sync_by_microsofts_names(stack: Stack) -> None:
    """Microsoft's templates: an item sales tax group is read as TaxItemGroup and Name, and a vendor group carries
    its default payment terms as the lookup msdyn_paymentterms."""
    for entity_set in ("ItemSalesTaxGroups", "VendorGroups"):
        eventually(lambda name=entity_set: _activated(stack, name), timeout=120,
                   what=f"the F&O activations of {entity_set}")
    usmf = stack.company_id("usmf")
    code = f"Z{time.time_ns() % 10**8}"
    response = stack.fo.post("ItemSalesTaxGroups", json={"dataAreaId": "usmf", "TaxItemGroup": code, "Name": "Zero"})
    assert response.status_code == 201, response.text
    groups = eventually(lambda: exact_rows(stack, "msdyn_taxitemgroups",
                                           f"msdyn_name eq '{code}' and _msdyn_company_value eq {usmf}"),
                        what="the F&O item sales tax group reaching msdyn_taxitemgroups")
    assert [(g["msdyn_name"], g["msdyn_description"]) for g in groups] == [(code, "Zero")]
    net45 = exact_rows(stack, "msdyn_paymentterms", f"msdyn_name eq 'Net45' and _msdyn_company_value eq {usmf}")
    response = stack.fo.patch("VendorGroups(dataAreaId='usmf',VendorGroupId='30')", params={"cross-company": "true"},
                              json={"DefaultPaymentTermName": "Net45"})
    assert response.status_code == 204, response.text
    eventually(lambda: [g["_msdyn_paymentterms_value"] for g in exact_rows(
        stack, "msdyn_vendorgroups", f"msdyn_vendorgroup eq '30' and _msdyn_company_value eq {usmf}")]
        == [net45[0]["msdyn_paymenttermid"]], what="the vendor group's payment terms reaching Dataverse")


def test_enable_scenario_turns_on_the_organisation_maps_on_the_running_host(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The user's way in: `dualwrite maps enable-scenario organisation` stores each map enabled; the host runs them and
    deploys their F&O events, so a site and a warehouse created in F&O afterwards reach Dataverse, linked."""
    from core.cli.main import main

    monkeypatch.setenv("DUALWRITE_CONFIG", str(tmp_path / "profiles.toml"))
    assert scenario(stack, "organisation")["disabled"] == ["operating-units", "sites", "warehouses"]
    assert (
        main(["maps", "enable-scenario", "organisation", "--url", stack.host.url, "--key", stack.host.master_key]) == 0
    )
    eventually(
        lambda: scenario(stack, "organisation")["disabled"] == [] or None,
        timeout=90,
        what="the host running the enabled maps",
    )

    def created(collection: str, row: dict[str, Any]) -> bool:
        response = stack.fo.post(collection, content=json.dumps(row), headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.text
        return True

    # F&O's data events for the new maps are activated by the deployment that follows the reload: retry the
    # create under new keys until one is delivered (an event before activation is not sent, as in F&O).
    def site_arrives() -> dict[str, Any] | None:
        site_id = f"S{int(time.time() * 1000) % 100000:05d}"
        created("OperationalSitesV2", {"dataAreaId": "usmf", "SiteId": site_id, "SiteName": "Scenario site"})
        for _ in range(20):
            rows = exact_rows(stack, "msdyn_operationalsites", f"msdyn_siteid eq '{site_id}'")
            if rows:
                return rows[0]
            time.sleep(1)
        return None

    site = eventually(site_arrives, timeout=180, what="a new F&O site reaching Dataverse")
    assert site["msdyn_sitename"] == "Scenario site"
    warehouse_id = f"W{site['msdyn_siteid'][1:]}"
    created(
        "Warehouses",
        {
            "dataAreaId": "usmf",
            "WarehouseId": warehouse_id,
            "WarehouseName": "Scenario warehouse",
            "OperationalSiteId": site["msdyn_siteid"],
        },
    )
    warehouse = eventually(
        lambda: exact_rows(stack, "msdyn_warehouses", f"msdyn_warehouseidentifier eq '{warehouse_id}'"),
        timeout=90,
        what="the warehouse reaching Dataverse",
    )[0]
    assert warehouse["msdyn_description"] == "Scenario warehouse"
    assert warehouse["_msdyn_operationalsite_value"] == site["msdyn_operationalsiteid"]
