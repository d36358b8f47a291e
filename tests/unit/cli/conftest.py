"""What every CLI test starts from."""

import pytest


@pytest.fixture(autouse=True)
def local_defaults(monkeypatch, tmp_path):
    """No DUALWRITE_* variables, no profile file (a developer's own must not leak in), and a working directory
    without local settings files."""
    for name in ("DUALWRITE_URL", "DUALWRITE_KEY", "DUALWRITE_PROFILE", "DEVHOST_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DUALWRITE_CONFIG", str(tmp_path / "no-such-dir" / "profiles.toml"))
    monkeypatch.chdir(tmp_path)
