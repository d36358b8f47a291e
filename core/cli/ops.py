"""`dualwrite deploy` and `dualwrite health`: register the maps' webhooks and F&O events now, and whether the engine
and what it depends on answer, with each map's figures.

Clients of `POST /api/manage/v1/deploy` (the deployment report; 502 when an item failed, 409 when APP_URL or
INGEST_KEY is unset), `GET /api/health` (anonymous: version, and per dependency whether it answers) and
`GET /api/manage/v1/health` (admin key: each map's mode, parked records, open errors, applied and failed changes over
the last minutes, lag p50/p95; engines from before it have none).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
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
    when,
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
    """GET /api/health, GET /api/manage/v1/health."""

    PREFIX = "/api"

    def health(self) -> dict[str, Any]:
        # a health answer may come with 503 (probes read the status): it is still the report
        answer = self.call("GET", "/health", accept=(503,))
        if not isinstance(answer, dict) or "status" not in answer:
            raise ApiError(f"the engine's answer to GET /api/health is no health report: {str(answer)[:200]}",
                           transient=True)
        return answer

    def maps(self) -> dict[str, Any] | None:
        """Each map's figures; None from an engine without the route."""
        try:
            return dict(self.call("GET", "/manage/v1/health"))
        except ApiError as error:
            if error.status in (404, 405):
                return None
            raise


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
    """The engine's version, whether Table Storage and Service Bus answer it, and each map's figures.

    Per map (with the admin key): mode, parked records, open errors, changes applied and failed over the last
    minutes, lag p50/p95. Exit 1 unless the engine is healthy.
    """
    err = stream_console(stderr=True)
    with connect(ctx, url, key, HealthApi, profile) as api:
        report = api.health()
        try:
            figures = api.maps()
        except ApiError as error:
            if error.status not in (401, 403):
                raise
            figures = None  # /api/health needs no key: what it says stands
            err.print(Text(f"no figures per map: {error}"))
    healthy = report.get("status") == "healthy"
    if as_json:
        print_json(report if figures is None else {**report, "map_health": figures})
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
        if figures is not None:
            _print_maps(out, figures)
    if not healthy:
        raise typer.Exit(EXIT_FAILED)


def _ms(value: object) -> str:
    return f"{value:,.0f} ms" if isinstance(value, int | float) else ""


def _print_maps(out: Console, figures: dict[str, Any]) -> None:
    maps = [m for m in figures.get("maps") or [] if isinstance(m, dict)]
    window = figures.get("window_minutes")
    minutes = f"{window:g} min" if isinstance(window, int | float) else "the window"
    if not maps:
        out.print(Text("\nno maps"))
        return
    out.print(Text(f"\nmaps, over the last {minutes}"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("map", "mode", "parked", "open errors", "applied", "per min", "failed", "lag p50", "lag p95",
                 "last applied"):
        table.add_column(name, justify="left" if name in ("map", "mode", "last applied") else "right", no_wrap=True)
    for item in maps:
        numbers = [f"{item.get(n):,}" if isinstance(item.get(n), int) else "" for n in (
            "parked_records", "open_errors", "applied")]
        rate = item.get("applied_per_min")
        more = "+" if item.get("sampled") else ""  # more in the window than were read: at least this
        table.add_row(Text(str(item.get("map") or "")), Text(str(item.get("mode") or "").replace("_", " ")),
                      *numbers[:2], numbers[2] + more, (f"{rate:,.1f}" if isinstance(rate, int | float) else "") + more,
                      f"{item.get('failed'):,}" if isinstance(item.get("failed"), int) else "",
                      _ms(item.get("lag_ms_p50")), _ms(item.get("lag_ms_p95")), when(item.get("last_applied_at")))
    out.print(table)
