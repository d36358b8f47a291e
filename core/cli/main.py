"""`dualwrite`: the command line. Each command group is a module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core import __version__
from core.cli import maps


def _version(_: argparse.Namespace) -> int:
    sys.stdout.write(f"dualwrite {__version__}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualwrite", description="Dual-write engine for Dynamics 365")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("version", help="print the engine version").set_defaults(handler=_version)
    # Command groups register themselves here (e.g. `maps`), one module each.
    maps.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
