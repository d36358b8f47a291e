"""What every CLI test starts from."""

import pytest


@pytest.fixture(autouse=True)
def local_defaults(monkeypatch, tmp_path):
    """No DUALWRITE_* variables, and a working directory without local settings files."""
    monkeypatch.delenv("DUALWRITE_URL", raising=False)
    monkeypatch.delenv("DUALWRITE_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
