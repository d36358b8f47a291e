"""The chaos suite (tests/chaos) as a bench: longer and bigger scenarios, their figures as JSON, and the table in
bench/README.md regenerated.

    .venv/bin/python -m bench.chaos [--scale bench|test] [-k EXPR] [--no-readme] [--figures PATH]

Runs `pytest tests/chaos` with CHAOS_SCALE (bench: 40-200 records per scenario, a minute of concurrent edits) and
CHAOS_FIGURES pointing at a file each scenario appends its figures to; prints one JSON object (`scenarios`: one
entry per scenario: changes, lost, doubled, converged in s, and what else it measured; `pytest_exit`, `seconds`)
and, unless --no-readme, replaces the table between the chaos markers of bench/README.md. A scenario that fails
its checks still reports its figures (they are written before the checks); its line is marked failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "bench" / "README.md"
BEGIN = "<!-- chaos figures: begin (python -m bench.chaos rewrites this table) -->"
END = "<!-- chaos figures: end -->"


def table(result: dict[str, Any]) -> str:
    rows = ["| scenario | changes | lost | doubled | converged in | notes |", "|---|---:|---:|---:|---:|---|"]
    for s in result["scenarios"]:
        notes = {k: v for k, v in s.items()
                 if k not in ("scenario", "scale", "changes", "lost", "doubled", "converged_s")}
        rows.append(f"| {s['scenario']} | {s.get('changes', '')} | {s.get('lost', '')} | {s.get('doubled', '')} | "
                    f"{s.get('converged_s', '')} s | {_notes(notes)} |")
    when = time.strftime("%Y-%m-%d", time.gmtime(result["finished"]))
    return "\n".join([
        BEGIN,
        f"Scale `{result['scale']}`, {when}, pytest exit {result['pytest_exit']} "
        f"({'all checks passed' if result['pytest_exit'] == 0 else 'some checks failed: see the run'}), "
        f"{result['seconds']:.0f} s in all.",
        "",
        *rows,
        END,
    ])


def _notes(notes: dict[str, Any]) -> str:
    text = "; ".join(f"{k.replace('_', ' ')}: {json.dumps(v, separators=(',', ':'))}" for k, v in notes.items())
    return text.replace("|", "/")


def update_readme(result: dict[str, Any]) -> None:
    text = README.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + table(result) + tail
    else:
        text = text.rstrip("\n") + "\n\n## `bench.chaos`\n\n" + table(result) + "\n"
    README.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("bench", "test"), default="bench")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression: some scenarios only")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--figures", type=Path, default=None, help="keep the JSON lines here")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    figures = args.figures or folder / "figures.jsonl"
    figures.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "tests/chaos", "-q", "-p", "no:cacheprovider", "-rxX",
               "-o", "timeout=3600"]
    if args.select:
        command += ["-k", args.select]
    started = time.time()
    env = {**os.environ, "CHAOS_SCALE": args.scale, "CHAOS_FIGURES": str(figures)}
    with (folder / "pytest.log").open("wb") as log:
        exit_code = subprocess.call(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    scenarios = [json.loads(line) for line in figures.read_text().splitlines() if line.strip()] \
        if figures.exists() else []
    result = {"bench": "chaos", "scale": args.scale, "pytest_exit": exit_code, "seconds": time.time() - started,
              "finished": time.time(), "pytest_log": str(folder / "pytest.log"), "scenarios": scenarios}
    print(json.dumps(result, indent=2))
    if not args.no_readme:
        update_readme(result)
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
