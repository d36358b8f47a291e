"""Lines of log files that hold a secret value: what the security tests and the e2e stacks check at their end."""

from __future__ import annotations

from pathlib import Path


def secret_lines(logs: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """`<what> in the <name> log, line <n>: <line>` for each line of each log holding one of the values."""
    return [f"{what} in the {name} log, line {number}: {line[:300]}"
            for name, text in logs.items() for number, line in enumerate(text.splitlines(), 1)
            for what, value in secrets.items() if value and value in line]


def read_logs(paths: dict[str, Path]) -> dict[str, str]:
    return {name: path.read_text(errors="replace") if path.exists() else "" for name, path in paths.items()}
