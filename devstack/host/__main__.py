"""python -m devstack.host [--port 7071] [--app function_app:app] [--settings local.settings.json]"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core.ops import redact
from devstack.host.config import HostConfigError, resolve_settings_path
from devstack.host.indexing import IndexingError
from devstack.host.server import FunctionHost, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.host", description="Local Azure Functions host")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--settings", default=None,
                        help="local.settings.json (default; falls back to local.settings.sample.json)")
    parser.add_argument("--host-json", default="host.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK's INFO lines drown the invocation log
    try:
        host = FunctionHost.prepare(args.app, resolve_settings_path(args.settings), Path(args.host_json))
    except (IndexingError, HostConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    redact.install([host.config.function_key, host.config.master_key])  # and whatever has a key's shape
    _apply_log_level(os.environ.get("LOG_LEVEL", ""))
    serve(host, args.port, args.bind)
    return 0


def _apply_log_level(name: str) -> None:
    """The app's LOG_LEVEL setting (DEBUG, INFO, WARNING, ERROR) as the host's level, once the settings are read.
    DEBUG opens the SDK's loggers as well: everything there is to see."""
    level = logging.getLevelName(name.strip().upper() or "INFO")
    if not isinstance(level, int):
        return  # the app's settings check names a bad LOG_LEVEL; the host keeps INFO
    logging.getLogger().setLevel(level)
    if level <= logging.DEBUG:
        logging.getLogger("azure").setLevel(logging.DEBUG)


if __name__ == "__main__":
    raise SystemExit(main())
