"""`python -m devstack.dataverse`: run the simulator."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from core.ops import redact
from devstack.dataverse import DEFAULT_PORT
from devstack.dataverse.app import Settings, create_app
from devstack.dataverse.limits import Limits
from devstack.dataverse.webhooks import WebhookSettings


def on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devstack.dataverse", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--db", default=":memory:", help="SQLite file, or :memory: (default)")
    p.add_argument("--seed", type=on_off, nargs="?", const=True, default=True,
                   help="demo data: --seed, --seed on or --seed off (system rows are always seeded)")
    p.add_argument("--limit-requests", type=int, default=6000, help="requests per caller per window")
    p.add_argument("--limit-window", type=float, default=300.0, help="sliding window in seconds")
    p.add_argument("--limit-concurrency", type=int, default=52, help="concurrent requests per caller")
    p.add_argument("--limit-execution", type=float, default=1200.0,
                   help="combined execution seconds per caller per window")
    p.add_argument("--webhook-timeout", type=float, default=60.0, help="seconds before a webhook call fails")
    p.add_argument("--organization", default="contoso", help="OrganizationName in webhook bodies")
    p.add_argument("--organization-domain", default="contoso.crm.dynamics.com",
                   help="x-ms-dynamics-organization header of webhook calls")
    p.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (clients that insist on https)")
    p.add_argument("--ssl-keyfile", help="private key of --ssl-certfile")
    p.add_argument("--ignore-bypass-step-ids", action="store_true",
                   help="do not let MSCRM.BypassBusinessLogicExecutionStepIds skip webhook steps")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.db != ":memory:":
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise SystemExit("--ssl-certfile and --ssl-keyfile go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    redact.install()  # webhook calls carry the endpoint's key in `code` (httpx logs each URL)
    settings = Settings(
        db_path=args.db, seed=args.seed,
        limits=Limits(requests=args.limit_requests, window_seconds=args.limit_window,
                      concurrency=args.limit_concurrency, execution_seconds=args.limit_execution),
        webhooks=WebhookSettings(organization_name=args.organization, organization_domain=args.organization_domain,
                                 timeout_seconds=args.webhook_timeout,
                                 honour_bypass_step_ids=not args.ignore_bypass_step_ids),
    )
    scheme = "https" if args.ssl_certfile else "http"
    print(f"Dataverse simulator on {scheme}://{args.host}:{args.port}/api/data/v9.2/", flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning",
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)


if __name__ == "__main__":
    main()
