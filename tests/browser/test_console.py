"""The operator console in a real browser against the running local stack: the dashboard shows the seeded maps,
pause and resume buttons move a map, an error made by a bad change is shown in full and resubmits from the page,
a map edit with a mistake shows the problem next to the field it names, and the live tail shows new activity."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from core.connectors import jsonwire
from tests.browser.conftest import WAIT, screenshot_dir
from tests.e2e.conftest import Stack, change_customer, eventually, new_customer

pytestmark = pytest.mark.e2e

IEEE754 = {"Content-Type": "application/json; IEEE754Compatible=true"}


def until(driver: WebDriver, condition: Any, what: str, timeout: float = WAIT) -> Any:
    """Wait for `condition(driver)` to be truthy; fail naming `what`."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message=what)


def loaded(driver: WebDriver, view: str) -> None:
    until(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == view,
          f"the {view} view loaded")


def go(driver: WebDriver, hash_: str, view: str) -> None:
    """Open a view by its address, as a link does; the same address again loads the page anew."""
    driver.execute_script("document.body.dataset.loaded = '';"
                          "if (window.location.hash === arguments[0]) window.location.reload();"
                          "else window.location.hash = arguments[0];", hash_)
    loaded(driver, view)


def row(driver: WebDriver, table: str, **data: str) -> WebElement | None:
    selector = f"#{table} tbody tr" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found else None


def shoot(driver: WebDriver, name: str) -> None:
    """A screenshot of the page as it is, when asked for (CONSOLE_SCREENSHOTS=<folder>)."""
    folder = screenshot_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / name))


def press(driver: WebDriver, selector: str) -> None:
    """Click what `selector` finds once it is there and enabled; a table redrawn meanwhile is looked up again."""
    def clicked(d: WebDriver) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        if not found or not found[0].is_enabled():
            return False
        found[0].click()
        return True

    until(driver, clicked, f"{selector} clicked")


def mode_of(stack: Stack, name: str) -> str:
    response = stack.admin.get(f"/api/manage/v1/modes/{name}")
    response.raise_for_status()
    return response.json()["mode"]


def test_the_dashboard_shows_the_seeded_maps_and_keeps_the_key_out_of_the_address(
        console: WebDriver, console_stack: Stack) -> None:
    loaded(console, "dashboard")
    expected = [m["map"] for m in console_stack.admin.get("/api/manage/v1/modes").json()["maps"]]
    assert {"customers", "vendors", "legal-entities", "contacts"} <= set(expected)
    rows = console.find_elements(By.CSS_SELECTOR, "#dash-table tbody tr")
    assert [r.get_attribute("data-map") for r in rows] == expected
    customers = row(console, "dash-table", map="customers")
    assert customers is not None
    assert customers.find_element(By.CSS_SELECTOR, "td.mode").text == "running"
    assert customers.find_element(By.CSS_SELECTOR, 'button[data-action="pause"]').is_enabled()
    assert not customers.find_element(By.CSS_SELECTOR, 'button[data-action="resume"]').is_enabled()
    assert console.find_element(By.CSS_SELECTOR, "#card-maps .value").text == str(len(expected))
    until(console, lambda d: d.find_element(By.ID, "health").text in ("healthy", "degraded"), "the health pill")
    # the key went from the address bar into this tab's session storage
    assert "code=" not in console.current_url
    assert console.execute_script("return sessionStorage.getItem('dualwrite.console.key')") == \
        console_stack.host.master_key


def test_the_page_asks_for_the_key_when_it_has_none_and_after_a_refusal(
        driver: WebDriver, console_stack: Stack) -> None:
    driver.get(f"{console_stack.host.url}/api/console#dashboard")
    driver.execute_script("sessionStorage.clear(); location.reload();")
    dialog = until(driver, lambda d: d.find_element(By.ID, "key-dialog") if d.find_element(
        By.ID, "key-dialog").get_attribute("open") is not None else None, "the key prompt")
    field = dialog.find_element(By.ID, "key-input")
    field.send_keys("not-the-key")
    field.submit()
    until(driver, lambda d: "refused" in d.find_element(By.ID, "key-why").text, "the refused key being said")
    driver.find_element(By.ID, "key-input").send_keys(console_stack.host.master_key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    loaded(driver, "dashboard")
    assert row(driver, "dash-table", map="customers") is not None


@pytest.fixture
def customers_running_after(console_stack: Stack) -> Iterator[None]:
    """Whatever the test leaves, customers runs again afterwards: the later tests sync customers."""
    yield
    if mode_of(console_stack, "customers") == "paused":
        console_stack.admin.post("/api/manage/v1/modes/customers/resume")
    eventually(lambda: mode_of(console_stack, "customers") == "running", timeout=120, what="customers running again")


def test_pause_and_resume_buttons_move_the_map(
        console: WebDriver, console_stack: Stack, customers_running_after: None) -> None:
    loaded(console, "dashboard")
    console.find_element(By.ID, "move-reason").send_keys("browser test window")
    press(console, '#dash-table tr[data-map="customers"] button[data-action="pause"]')

    def paused(d: WebDriver) -> bool:
        shown = row(d, "dash-table", map="customers", mode="paused")
        return bool(shown) and "browser test window" in shown.text and "by console" in shown.text  # why, by whom

    until(console, paused, "customers shown paused, with the reason and who")
    assert mode_of(console_stack, "customers") == "paused"
    until(console, lambda d: not d.find_element(
        By.CSS_SELECTOR, '#dash-table tr[data-map="customers"] button[data-action="pause"]').is_enabled(),
        "pause no longer offered")

    press(console, '#dash-table tr[data-map="customers"] button[data-action="resume"]')
    until(console, lambda d: row(d, "dash-table", map="customers", mode="catching_up")
          or row(d, "dash-table", map="customers", mode="running"), "customers shown catching up or running")
    # the dashboard refreshes by itself: the catch-up ends and the map runs again
    until(console, lambda d: row(d, "dash-table", map="customers", mode="running"), "customers shown running again",
          timeout=90)
    assert mode_of(console_stack, "customers") == "running"


def test_an_error_from_a_bad_change_is_shown_in_full_and_resubmits_from_the_page(
        console: WebDriver, console_stack: Stack) -> None:
    stack = console_stack
    account = f"B{uuid.uuid4().hex[:6].upper()}"
    new_customer(stack, account)
    # Dataverse money columns stop at 100,000,000,000,000; F&O takes more: the change is refused in Dataverse.
    response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')",
                              params={"cross-company": "true"}, json={"CreditLimit": "500000000000000.5"},
                              headers=IEEE754)
    assert response.status_code == 204, response.text
    error = eventually(lambda: next((e for e in stack.errors(map="customers") if e["key"] == f"USMF|{account}"), None),
                       what="the refused change in the error log")

    go(console, "#errors?map=customers", "errors")
    entry = until(console, lambda d: row(d, "error-table", id=error["id"]), "the error entry listed")
    assert entry.find_element(By.CSS_SELECTOR, "td.status").text == "open"
    assert account in entry.text and "application" in entry.text
    entry.find_element(By.CSS_SELECTOR, "td.mono").click()
    text = until(console, lambda d: d.find_element(By.ID, "error-text") if d.find_element(
        By.ID, "error-detail").is_displayed() else None, "the entry's full text")
    assert "creditlimit" in text.text and "0x80044331" in text.text
    assert json.loads(console.find_element(By.ID, "error-change").text)["entity"] == "CustomersV3"

    # fix the data in F&O without raising events (a set-based update), then resubmit from the page
    fixed = httpx.post(f"{stack.fno.admin_url}bulk-update", json={
        "entity": "CustomersV3", "company": "usmf", "filter": f"CustomerAccount eq '{account}'",
        "set": {"CreditLimit": "9000.5"}, "raiseEvents": False}, timeout=30)
    assert fixed.status_code < 300, fixed.text
    press(console, f'#error-table tr[data-id="{error["id"]}"] button[data-act="resubmit"]')
    until(console, lambda d: any("resubmitted" in t.text for t in d.find_elements(By.CSS_SELECTOR, "#toasts .toast")),
          "the resubmit confirmed")
    assert stack.admin.get(f"/api/manage/v1/errors/{quote(error['id'], safe='')}").json()["status"] == "resubmitted"
    eventually(lambda: Decimal(str(stack.account(account)["creditlimit"])) == Decimal("9000.5"),
               what="the resubmitted change applied in Dataverse")
    # the open list no longer has it; with every status it is there, resubmitted and without buttons
    until(console, lambda d: row(d, "error-table", id=error["id"]) is None, "the entry gone from the open list")
    go(console, "#errors?map=customers&status=all", "errors")
    done = until(console, lambda d: row(d, "error-table", id=error["id"]), "the entry under every status")
    assert done.find_element(By.CSS_SELECTOR, "td.status").text == "resubmitted"
    assert not done.find_element(By.CSS_SELECTOR, 'button[data-act="resubmit"]').is_enabled()
    shoot(console, "console-errors.png")


def _draft_with(driver: WebDriver, change: Any) -> None:
    """Edit the map's JSON in the editor as a user does (the page sees an input event)."""
    editor = driver.find_element(By.ID, "map-editor")
    definition = jsonwire.loads(editor.get_attribute("value"))
    change(definition)
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                          editor, jsonwire.dumps(definition).decode())


def _checked(driver: WebDriver) -> None:
    """Problems come from the dry-run validate route as one types or, where the app has none yet, from Save."""
    until(driver, lambda d: d.find_element(By.ID, "map-check").text not in ("", "checking\u2026"), "the draft checked")
    if "checked when saved" in driver.find_element(By.ID, "map-check").text:
        driver.find_element(By.ID, "map-save").click()


def test_a_map_edit_with_a_mistake_shows_the_problem_next_to_the_field(
        console: WebDriver, console_stack: Stack) -> None:
    go(console, "#maps/customers", "maps")
    until(console, lambda d: d.find_elements(By.ID, "map-editor"), "the map editor")
    credit = row(console, "map-fields", field="CreditLimit")
    assert credit is not None and "decimal_scale" in credit.text  # the running definition, with its transforms
    assert row(console, "map-lookups", field="primarycontactid") is not None
    graph = console.find_element(By.CSS_SELECTOR, '#map-graph g.node.current[data-map="customers"]')
    assert graph is not None
    # the sync order drawn is the engine's own (the map files run unchanged here)
    plan = [li.get_attribute("data-map") for li in console.find_elements(By.CSS_SELECTOR, "#map-plan li")]
    order = httpx.get(f"{console_stack.host.url}/api/maps", timeout=30,
                      headers={"x-functions-key": console_stack.host.function_key}).json()["order"]
    assert plan == order and plan.index("legal-entities") < plan.index("customers")
    assert "primarycontactid" in console.find_element(By.CSS_SELECTOR, '#map-plan li[data-map="customers"]').text

    def sideways(definition: dict[str, Any]) -> None:
        next(f for f in definition["fields"] if f["fno"] == "CreditLimit")["direction"] = "sideways"

    _draft_with(console, sideways)
    _checked(console)
    problem = until(console, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#map-fields tr[data-field="CreditLimit"] .problem'), "the problem next to CreditLimit")
    assert "sideways" in problem[0].text
    console.execute_script("arguments[0].scrollIntoView({block: 'center'})", problem[0])
    shoot(console, "console-map.png")
    assert row(console, "map-fields", field="OrganizationName").find_elements(By.CSS_SELECTOR, ".problem") == []

    def loud(definition: dict[str, Any]) -> None:
        definition["conflict"] = "whoever_shouts_loudest"

    go(console, "#maps/customers", "maps")  # the running definition again
    _draft_with(console, loud)
    _checked(console)
    problem = until(console, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#map-settings tr[data-field="conflict"] .problem'), "the problem next to conflict")
    assert "whoever_shouts_loudest" in problem[0].text
    # nothing was stored: the file's definition still runs
    running = console_stack.admin.get("/api/manage/v1/maps/customers").json()
    assert running["revision"] is None and running["definition"]["conflict"] == "latest_wins"


def test_a_sample_record_is_previewed_through_the_draft(console: WebDriver) -> None:
    go(console, "#maps/vendors", "maps")
    until(console, lambda d: d.find_elements(By.ID, "map-sample"), "the preview panel")
    sample = console.find_element(By.ID, "map-sample")
    sample.send_keys('{"dataAreaId": "usmf", "VendorAccountNumber": "V-9", "VendorOrganizationName": "Litware",'
                     ' "VendorGroupId": "10"}')
    console.find_element(By.CSS_SELECTOR, '#map-direction option[value="to_dataverse"]').click()
    press(console, "#map-preview")
    shown = until(console, lambda d: d.find_element(By.ID, "map-preview-out").text, "the previewed values")
    values = json.loads(shown)
    assert values["msdyn_vendorname"] == "Litware" and values["msdyn_vendoraccountnumber"] == "V-9"
    assert values["msdyn_company"]["key"] == {"cdm_companycode": "USMF"}
    sample.clear()
    sample.send_keys("{not json")
    press(console, "#map-preview")
    until(console, lambda d: "not JSON" in d.find_element(By.ID, "map-preview-out").text, "a bad sample said so")


def test_the_live_tail_shows_a_new_change_without_a_reload(console: WebDriver, console_stack: Stack) -> None:
    account = f"T{uuid.uuid4().hex[:6].upper()}"
    new_customer(console_stack, account)
    go(console, "#activity", "activity")
    console.find_element(By.ID, "live-tail").click()
    change_customer(console_stack, account, OrganizationName=f"{account} renamed")

    def renamed(d: WebDriver) -> bool:
        rows = d.find_elements(By.CSS_SELECTOR, f'#activity-table tbody tr[data-key="USMF|{account}"]')
        return any(r.get_attribute("data-outcome") == "applied" and "updated name" in r.text for r in rows)

    until(console, renamed, "the rename's activity in the live tail", timeout=60)
    shoot(console, "console-activity.png")
    console.find_element(By.ID, "live-tail").click()  # off again
    assert not console.find_element(By.ID, "live-tail").is_selected()
    go(console, "#dashboard", "dashboard")
    # the changes of the last minutes count in the customers row: applied per minute and their lag
    customers = until(console, lambda d: row(d, "dash-table", map="customers"), "the customers row")
    assert float(customers.find_element(By.CSS_SELECTOR, "td.rate").text.rstrip("+")) > 0
    assert " / " in customers.find_element(By.CSS_SELECTOR, "td.lag").text
    shoot(console, "console-dashboard.png")


def test_a_run_is_shown_with_its_progress(console: WebDriver, console_stack: Stack) -> None:
    started = console_stack.admin.post("/api/manage/v1/sync/runs", json={"kind": "compare", "maps": ["currencies"]})
    assert started.status_code == 202, started.text
    run = started.json()["id"]
    go(console, "#runs", "runs")  # the view refreshes itself every 3 s

    def completed(d: WebDriver) -> WebElement | None:
        found = d.find_elements(By.CSS_SELECTOR, f'#run-list .run[data-run="{run}"][data-status="completed"]')
        return found[0] if found else None

    card = until(console, completed, "the compare run shown completed", timeout=90)
    currencies = card.find_element(By.CSS_SELECTOR, 'tr[data-map="currencies"]')
    assert "done" in currencies.text
    bar = currencies.find_element(By.CSS_SELECTOR, "[role=progressbar]")
    assert bar.get_attribute("aria-valuenow") == "100"
    shoot(console, "console-runs.png")
