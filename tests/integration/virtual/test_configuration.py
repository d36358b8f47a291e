"""What the service answers when it is set up wrong: broken definition files and a SQL table whose URL setting is
missing are 500 problems naming the file or setting (never a crash, never a value of a secret)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devstack.virtualdata import DEFINITIONS
from tests.fixtures.devhost import RunningHost
from tests.integration.virtual.conftest import HEADER, KEY

pytestmark = pytest.mark.integration


def test_broken_definitions_are_a_500_naming_file_and_field(
    devhost: Callable[..., RunningHost], tmp_path: Path
) -> None:
    (tmp_path / "broken.json").write_text(
        json.dumps(
            {
                "entity_set": "Broken",
                "source": {"kind": "sql", "table": "t"},
                "columns": [{"name": "A", "type": "Edm.Single"}],
                "key": {"kind": "column", "column": "A"},
            }
        )
    )
    host = devhost(
        "tests.integration.virtual.app:app",
        VIRTUAL_TABLES_PATH=str(tmp_path),
        VIRTUAL_TABLES_KEY=KEY,
        DEPLOY_ON_START="false",
        SWEEP_ENABLED="false",
    )
    answer = httpx.get(f"{host.url}/api/odata/$metadata", headers=HEADER)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert any(p.startswith("broken.json: columns.0.type") for p in answer.json()["problems"])


def test_a_missing_sql_url_setting_is_a_500_naming_it(devhost: Callable[..., RunningHost], tmp_path: Path) -> None:
    definition = json.loads((DEFINITIONS / "products.json").read_text())
    definition["source"]["url_setting"] = "NO_SUCH_SQL_URL"
    (tmp_path / "products.json").write_text(json.dumps(definition))
    host = devhost(
        "tests.integration.virtual.app:app",
        VIRTUAL_TABLES_PATH=str(tmp_path),
        VIRTUAL_TABLES_KEY=KEY,
        DEPLOY_ON_START="false",
        SWEEP_ENABLED="false",
    )
    with httpx.Client(base_url=f"{host.url}/api/odata/", headers=HEADER) as client:
        assert client.get("$metadata").status_code == 200  # the definitions themselves are fine
        answer = client.get("Products")
    assert answer.status_code == 500
    assert "NO_SUCH_SQL_URL" in answer.json()["detail"]
