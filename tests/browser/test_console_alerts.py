"""The console's Alerts view and the dashboard's metrics in a real browser against the package's local stack: a rule
created through the API is listed with its condition, scope and actions; "Evaluate now" makes it fire and the
firing table shows its value against the threshold; disabling it from the page is stored; the dashboard's map table
shows the figures of GET manage/v1/metrics and the throttling per side."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.test_console import go, loaded, press, row, shoot, until
from tests.e2e.conftest import Stack, new_customer

pytestmark = pytest.mark.e2e

RULE = "browser-parked"


@pytest.fixture
def a_rule(console_stack: Stack) -> Iterator[str]:
    """A rule true at once (parked records of customers >= 0; nothing parked is 0) without notifications, deleted
    afterwards (its alert ends with it)."""
    response = console_stack.admin.put(f"/api/manage/v1/alerts/rules/{RULE}", json={
        "name": RULE, "description": "browser test", "metric": "parked_records", "op": ">=", "threshold": 0,
        "window_minutes": 15, "scope": {"map": "customers", "direction": None}, "notify": False})
    assert response.status_code in (200, 201), response.text
    yield RULE
    console_stack.admin.delete(f"/api/manage/v1/alerts/rules/{RULE}")


def test_a_rule_is_listed_fires_on_evaluate_and_is_disabled_from_the_page(
        console: WebDriver, console_stack: Stack, a_rule: str) -> None:
    go(console, "#alerts", "alerts")
    rule = until(console, lambda d: row(d, "alert-rules", rule=a_rule), "the rule listed")
    assert rule.find_element(By.CSS_SELECTOR, "td.condition").text == "parked_records >= 0 records over 15 min"
    assert rule.find_element(By.CSS_SELECTOR, "td.scope").text == "customers"
    assert rule.find_element(By.CSS_SELECTOR, "td.actions-text").text == "history only"
    assert rule.find_element(By.CSS_SELECTOR, "td.enabled").text == "yes"
    # the shipped rules are there too
    assert row(console, "alert-rules", rule="lag") is not None

    press(console, "#alerts-evaluate")
    until(console, lambda d: any("evaluated" in t.text for t in d.find_elements(By.CSS_SELECTOR, "#toasts .toast")),
          "the evaluation confirmed")
    firing = until(console, lambda d: row(d, "alert-firing", rule=a_rule, subject="customers"),
                   "the alert firing on customers")
    assert firing.find_element(By.CSS_SELECTOR, "td.value").text == "0"
    assert firing.find_element(By.CSS_SELECTOR, "td.threshold").text == "0"
    until(console, lambda d: row(d, "alert-rules", rule=a_rule, state="firing"), "the rule shown firing")
    until(console, lambda d: row(d, "alert-history", rule=a_rule, kind="fired"), "the fired entry in the history")
    until(console, lambda d: d.find_element(By.ID, "nav-alerts").text not in ("", "0"),
          "the firing count in the navigation")  # the badge follows on the page's next refresh
    shoot(console, "console-alerts.png")

    press(console, f'#alert-rules button[data-toggle="{a_rule}"]')
    until(console, lambda d: row(d, "alert-rules", rule=a_rule, enabled="false"), "the rule shown disabled")
    stored = console_stack.admin.get(f"/api/manage/v1/alerts/rules/{a_rule}").json()
    assert stored["enabled"] is False and stored["metric"] == "parked_records"  # the rest kept


def test_the_dashboard_shows_the_metrics_per_map_and_the_throttling_per_side(
        console: WebDriver, console_stack: Stack) -> None:
    new_customer(console_stack, f"M{uuid.uuid4().hex[:6].upper()}")  # an F&O change applied in Dataverse
    loaded(console, "dashboard")

    def figures(d: WebDriver) -> WebElement | None:  # once the engine's counts are written (every few seconds)
        found = row(d, "dash-table", map="customers")
        lag = found.find_elements(By.CSS_SELECTOR, "td.lag .lag-dir") if found else []
        return found if lag and lag[0].text.startswith("\u2192DV ") and "\u2014" not in lag[0].text[:8] else None

    customers = until(console, figures, "customers' lag p95 to Dataverse", timeout=60)
    assert customers.find_element(By.CSS_SELECTOR, "td.error-rate").text.endswith(" %")
    assert customers.find_elements(By.CSS_SELECTOR, "td.backlog")
    metrics = console_stack.admin.get("/api/manage/v1/metrics").json()
    throttled = console.find_element(By.ID, "card-throttled")
    assert "429s / min: Dataverse / F&O" in throttled.text
    for side in metrics["sides"]:
        assert throttled.get_attribute(f"data-{side['side']}") is not None
    assert console.find_element(By.ID, "card-deployment").find_element(By.CSS_SELECTOR, ".value").text == \
        metrics["deployment"]["status"]
    assert console.find_element(By.ID, "card-alerts") is not None
    shoot(console, "console-dashboard-metrics.png")
