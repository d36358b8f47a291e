"""`AzureWebJobs.<name>.Disabled` turns a function off, as the Functions runtime reads the app setting: the local
host does not index it (no route, pump or timer); other values leave it on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack.host.server import FunctionHost, disabled
from tests.fixtures.devhost import write_settings


@pytest.mark.parametrize(("value", "off"), [("true", True), ("True", True), ("1", True), ("false", False),
                                            ("0", False), ("", False)])
def test_the_setting_is_read_as_the_runtime_reads_it(monkeypatch: pytest.MonkeyPatch, value: str, off: bool) -> None:
    monkeypatch.setenv("AzureWebJobs.weekday_morning.Disabled", value)
    assert disabled("weekday_morning") is off
    assert disabled("every_ten_seconds") is False


def test_a_disabled_function_is_not_indexed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = write_settings(tmp_path / "local.settings.json", **{"AzureWebJobs.weekday_morning.Disabled": "true"})
    monkeypatch.delenv("AzureWebJobs.weekday_morning.Disabled", raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the settings file's values stay in this test
    host = FunctionHost.prepare("tests.apps.timer_app:app", settings)
    assert [spec.name for spec in host.specs] == ["every_ten_seconds"]
