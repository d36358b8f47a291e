"""`python -m devstack.fno`: run the F&O simulator (service root http://127.0.0.1:7102/data/)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from devstack.fno.app import Settings, create_app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.fno", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7102)
    p.add_argument("--db", default=":memory:", help="SQLite file, or :memory: (default)")
    p.add_argument("--seed", choices=["on", "off"], default="on", help="load the demo data (default on)")
    p.add_argument("--default-company", default="usmf", help="the callers' default legal entity")
    p.add_argument("--max-concurrent", type=int, default=52, help="concurrent requests per caller (0 = no cap)")
    p.add_argument("--rate-limit", type=int, default=0, help="requests per caller per window (0 = no cap)")
    p.add_argument("--rate-window", type=float, default=300.0, help="seconds of the rate window")
    p.add_argument("--page-size", type=int, default=10_000, help="server page size (max 10,000)")
    p.add_argument("--event-retries", type=int, default=3, help="retries after a failed event delivery")
    p.add_argument("--event-retry-delay", type=float, default=1.0, help="seconds between delivery retries")
    p.add_argument("--ca-file", default=None, help="extra CA certificates (PEM) trusted for HTTPS endpoints")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    if not 1 <= args.page_size <= 10_000:
        p.error("--page-size must be between 1 and 10000")
    if min(args.max_concurrent, args.rate_limit, args.event_retries) < 0 or args.event_retry_delay < 0:
        p.error("limits, retries and delays cannot be negative")
    if args.rate_window <= 0:
        p.error("--rate-window must be positive")
    if args.db != ":memory:":
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=args.log_level.upper())
    settings = Settings(
        db=args.db, seed=args.seed == "on", default_company=args.default_company, max_concurrent=args.max_concurrent,
        rate_limit=args.rate_limit, rate_window=args.rate_window, page_size=args.page_size,
        event_retries=args.event_retries, event_retry_delay=args.event_retry_delay, ca_file=args.ca_file,
    )
    print(f"F&O simulator: http://{args.host}:{args.port}/data/ (db {args.db}, seed {args.seed})", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
