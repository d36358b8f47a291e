"""`dualwrite deploy` and `dualwrite health`: register the maps' webhooks and F&O events now, and whether the engine
and what it depends on answer.

Clients of `POST /api/manage/v1/deploy` (the deployment report; 502 when an item failed, 409 when APP_URL or
INGEST_KEY is unset) and `GET /api/health` (anonymous: version, and per dependency whether it answers).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    EXIT_FAILED,
    ApiError,
    AsJson,
    Key,
    ManagementApi,
    ProfileName,
    Url,
    connect,
    print_json,
    stream_console,
)

# The order a report's counts are told in; others (a status added later) follow.
STATUS_ORDER = ("created", "updated", "deleted", "unchanged", "failed")
KIND_NAMES = {
    "dataverse_endpoint": "Dataverse webhook endpoint",
    "dataverse_step": "Dataverse step",
    "dataverse_image": "Dataverse image",
    "fno_endpoint": "F&O endpoint",
    "fno_activation": "F&O data event",
}


class DeployApi(ManagementApi):
    """POST /deploy: its report comes with 200 (all went) or 502 (an item failed)."""

    def deploy(self) -> dict[str, Any]:
        answer = self.call("POST", "/deploy", accept=(502,))
        if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            raise ApiError(f"the engine's answer to POST /deploy is no deployment report: {str(answer)[:200]}")
        return answer


class HealthApi(ManagementApi):
    """GET /api/health."""

    PREFIX = "/api"

    def health(self) -> dict[str, Any]:
        # a health answer may come with 503 (probes read the status): it is still the report
        answer = self.call("GET", "/health", accept=(503,))
        if not isinstance(answer, dict) or "status" not in answer:
            raise ApiError(f"the engine's answer to GET /api/health is no health report: {str(answer)[:200]}",
                           transient=True)
        return answer


def _counts(report: dict[str, Any]) -> str:
    counts = report.get("counts")
    if not isinstance(counts, dict):
        return "no counts"
    names = [n for n in STATUS_ORDER if n in counts] + sorted(n for n in counts if n not in STATUS_ORDER)
    return ", ".join(f"{counts[name]} {name}" for name in names) or "nothing to register"


def deploy(ctx: typer.Context, as_json: AsJson = False, url: Url = None, key: Key = None,
           profile: ProfileName = None) -> None:
    """Register the maps' Dataverse webhook steps and F&O data events now, and print the report.

    The host does the same at start and every 30 minutes; a second run reports everything unchanged. Exit 1 when an
    item failed (or APP_URL or INGEST_KEY is unset on the engine).
    """
    with connect(ctx, url, key, DeployApi, profile) as api:
        report = api.deploy()
    ok = report.get("ok") is True
    if as_json:
        print_json(report)
    else:
        out = stream_console()
        items = [item for item in report["items"] if isinstance(item, dict)]
        if items:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for name in ("what", "name", "status", "detail"):
                table.add_column(name, no_wrap=name in ("what", "status"), overflow="fold")
            for item in items:
                kind = str(item.get("kind") or "")
                status = str(item.get("status") or "")
                table.add_row(Text(KIND_NAMES.get(kind, kind)), Text(str(item.get("name") or "")),
                              Text(status, style="bold red" if status == "failed" else ""),
                              Text(str(item.get("detail") or "")))
            out.print(table)
        out.print(Text(f"{'deployed' if ok else 'deployment failed'}: {_counts(report)}"))
    if not ok:
        raise typer.Exit(EXIT_FAILED)


def health(ctx: typer.Context, as_json: AsJson = False, url: Url = None, key: Key = None,
           profile: ProfileName = None) -> None:
    """The engine's version, and whether Table Storage and Service Bus answer it.

    Exit 1 unless it is healthy.
    """
    with connect(ctx, url, key, HealthApi, profile) as api:
        report = api.health()
    healthy = report.get("status") == "healthy"
    if as_json:
        print_json(report)
    else:
        out = stream_console()
        out.print(Text(f"{report.get('status') or 'unknown'}, version {report.get('version') or 'unknown'}"))
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in ("dependency", "answers", "latency", "error"):
            table.add_column(name, justify="right" if name == "latency" else "left", no_wrap=name != "error",
                             overflow="fold")
        for name, part in report.items():
            if not isinstance(part, dict) or "reachable" not in part:
                continue
            latency = part.get("latency_ms")
            table.add_row(Text(name.replace("_", " ")), "yes" if part.get("reachable") else "no",
                          f"{latency:,.1f} ms" if isinstance(latency, int | float) else "",
                          Text(str(part.get("error") or "")))
        if table.row_count:
            out.print(table)
    if not healthy:
        raise typer.Exit(EXIT_FAILED)
