"""A temp copy of what the infrastructure checks read, for the tests that break it on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Everything infra/checks.py reads: the templates and the code and local configuration they must agree with.
CHECKED = [
    "infra",
    "core",
    "functions",
    "host.json",
    "local.settings.sample.json",
    "pyproject.toml",
    "azure.yaml",
    "devstack/servicebus/topology.json",
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the checked files; a test edits it and runs a check on it."""
    for relative in CHECKED:
        source, target = ROOT / relative, tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return tmp_path


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace `old` in the file (it must be there: a mutation that finds nothing would prove nothing)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))
