"""Browser tests of the operator console: Debian's Chromium (apt packages `chromium`, `chromium-driver`, installed
by `make deps`) driven by Selenium, headless, against a whole local stack of this package's own (the e2e stack:
both simulators seeded, deployment on) over an Azurite of its own, so the modes and errors the tests make are
seen by no other test.

`console` opens the page as a user does after `make run`: `<host>/api/console?code=<master key>`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.azurite import azurite_table, connection_string
from tests.browser.chrome import chrome, missing
from tests.e2e.conftest import Stack, running_stack
from tests.fixtures.devhost import RunningHost

WAIT = 30.0  # seconds an explicit wait allows: the dashboard refreshes every 5 s, a change syncs in about one


@pytest.fixture(scope="package")
def console_azurite() -> Iterator[str]:
    process = azurite_table().start()
    try:
        assert process.port is not None
        yield connection_string(process.port)
    finally:
        process.stop()


@pytest.fixture(scope="package")
def console_stack(console_azurite: str, servicebus_emulator: Any,
                  devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    with running_stack(console_azurite, servicebus_emulator, devhost) as stack:
        yield stack


@pytest.fixture(scope="package")
def driver() -> Iterator[Any]:
    if missing():
        pytest.fail(f"{' and '.join(missing())} missing: `make deps` installs Debian's chromium and chromium-driver "
                    "(as root: apt-get install -y chromium chromium-driver)", pytrace=False)
    browser = chrome()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def console(driver: Any, console_stack: Stack) -> Iterator[Any]:
    """The console open on its dashboard with the stack's master key, as `make run` prints its address."""
    driver.get(f"{console_stack.host.url}/api/console?code={console_stack.host.master_key}#dashboard")
    yield driver
    # what the page said to the browser's console (errors of its own scripts) goes with a failure's report
    driver.get_log("browser")


def screenshot_dir() -> Path | None:
    """Where the tests keep their screenshots when asked (CONSOLE_SCREENSHOTS=docs): the README's come from here."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    return Path(folder) if folder else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    browser = item.funcargs.get("console") if hasattr(item, "funcargs") else None
    stack = item.funcargs.get("console_stack") if hasattr(item, "funcargs") else None
    if browser is not None:
        try:
            report.sections.append(("page (URL)", browser.current_url.split("?")[0]))
            logs = [f"{e['level']} {e['message']}" for e in browser.get_log("browser")]
            report.sections.append(("browser console", "\n".join(logs[-40:]) or "(empty)"))
            report.sections.append(("page text", browser.find_element("tag name", "body").text[-4000:]))
        except Exception as error:  # the report must not hide the failure it explains
            report.sections.append(("browser", f"could not read the page: {error!r}"))
    if isinstance(stack, Stack):
        report.sections.append(("host log (tail)", stack.host.log()[-5000:]))
