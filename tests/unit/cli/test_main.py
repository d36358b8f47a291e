"""The `dualwrite` entry point: exit codes as the console script returns them, the command groups."""

import sys

from core import __version__
from core.cli.main import main


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"dualwrite {__version__}\n"


def test_help_lists_the_groups(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "maps" in out and "sync" in out and "version" in out


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["nope"]) == 2
    assert main(["maps"]) == 2
    assert main(["maps", "validate", "--no-such-option"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_reads_sys_argv_without_arguments(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["dualwrite", "version"])
    assert main() == 0
    assert __version__ in capsys.readouterr().out
