"""`dualwrite metrics`: the engine's figures over the last minutes, per map and direction (applied per second, lag
p50/p95, backlog age, parked records, open errors, error rate), each side's throttling, the queue and the last
deployment; `--prometheus` prints the same as Prometheus scrapes it.

A client of `GET /api/manage/v1/metrics?window_minutes=` (JSON) and `GET /api/manage/v1/metrics/prometheus` (text).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    ApiError,
    AsJson,
    Key,
    ManagementApi,
    ProfileName,
    Url,
    connect,
    print_json,
    problem_message,
    stream_console,
    when,
)

DIRECTIONS = {"to_dataverse": "to Dataverse", "to_fno": "to F&O"}
SIDES = {"dataverse": "Dataverse", "fno": "F&O"}


class RawApi(ManagementApi):
    """The management API's answers that are not a JSON object: a text (Prometheus), or nothing at all (204)."""

    def send(self, method: str, path: str, *, body: object = None, params: dict[str, Any] | None = None,
             accept: str = "application/json", headers: dict[str, str] | None = None) -> httpx.Response:
        """The answer as it came; an error answer or an unreachable engine is an ApiError, as `call` makes it, its
        message naming the field (or each problem's) a problem+json answer names."""
        try:
            response = self._client.request(method, path, json=body, params=params,
                                            headers={"accept": accept, **(headers or {})})
        except httpx.TransportError as error:
            raise ApiError(
                f"cannot reach the engine at {self._base_url} ({type(error).__name__}: {error}); "
                "is it running (locally: make run), or is --url / DUALWRITE_URL wrong?",
                transient=True,
            ) from None
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = None
            problem = body if isinstance(body, dict) else None
            raise ApiError(with_fields(problem_message(response), problem),
                           transient=response.status_code in (502, 503, 504), problem=problem,
                           status=response.status_code)
        return response


def with_fields(message: str, problem: dict[str, Any] | None) -> str:
    """The message of a problem+json answer, with the field it names (`field`, or each of its `problems`) when the
    message does not say it already."""
    if not problem:
        return message
    field = problem.get("field")
    if isinstance(field, str) and field and field not in message:
        message += f" (field: {field})"
    for item in problem.get("problems") or []:
        if isinstance(item, dict) and item.get("message"):
            where = str(item.get("field") or "")
            message += f"\n  {where + ': ' if where else ''}{item['message']}"
    return message


class MetricsApi(RawApi):
    """GET /metrics, GET /metrics/prometheus."""

    def metrics(self, window_minutes: float | None) -> dict[str, Any]:
        answer = self.call("GET", "/metrics", params=_window(window_minutes))
        if not isinstance(answer, dict) or not isinstance(answer.get("maps"), list):
            raise ApiError(f"the engine's answer to GET /metrics is no metrics report: {str(answer)[:200]}")
        return answer

    def prometheus(self, window_minutes: float | None) -> str:
        return self.send("GET", "/metrics/prometheus", params=_window(window_minutes), accept="text/plain").text


def _window(minutes: float | None) -> dict[str, Any] | None:
    return None if minutes is None else {"window_minutes": f"{minutes:g}"}


# --- output ---------------------------------------------------------------------------------------------


def seconds(value: object) -> str:
    """A duration in seconds as people read it: 850 ms, 12.5 s, 4.2 min, 3.1 h; empty for none."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    if value < 1:
        return f"{value * 1000:,.0f} ms"
    if value < 60:
        return f"{value:,.1f} s"
    if value < 3600:
        return f"{value / 60:,.1f} min"
    return f"{value / 3600:,.1f} h"


def number(value: object, fmt: str = ",") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    return format(value, fmt)


def percent(value: object) -> str:
    return f"{value:,.1f} %" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def direction(value: object) -> str:
    return DIRECTIONS.get(str(value), str(value or ""))


def side(value: object) -> str:
    return SIDES.get(str(value), str(value or ""))


def _maps_table(maps: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("map", "direction", "mode", "applied", "per s", "failed", "lag p50", "lag p95", "backlog age",
               "parked", "oldest parked", "open errors", "error rate", "last applied")
    for name in columns:
        table.add_column(name, justify="left" if name in ("map", "direction", "mode", "last applied") else "right",
                         no_wrap=True)
    for item in maps:
        table.add_row(
            Text(str(item.get("map") or "")), direction(item.get("direction")),
            Text(str(item.get("mode") or "").replace("_", " ")),
            number(item.get("applied")), number(item.get("applied_per_s"), ",.2f"), number(item.get("failed")),
            seconds(item.get("lag_p50_s")), seconds(item.get("lag_p95_s")), seconds(item.get("backlog_age_s")),
            number(item.get("parked_records")), seconds(item.get("oldest_parked_age_s")),
            number(item.get("open_errors")), percent(item.get("error_rate_pct")), when(item.get("last_applied_at")))
    return table


def _sides_table(sides: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("side", "throttled", "per min"):
        table.add_column(name, justify="left" if name == "side" else "right", no_wrap=True)
    for item in sides:
        table.add_row(side(item.get("side")), number(item.get("throttled")),
                      number(item.get("throttled_per_min"), ",.1f"))
    return table


def queue_line(queue: object) -> str:
    if not isinstance(queue, dict):
        return "queue: not reported"
    depth = queue.get("depth")
    text = f"queue: {depth:,} message(s)" if isinstance(depth, int) else "queue: depth unknown"
    return text + (f" ({queue.get('note')})" if queue.get("note") else "")


def deployment_line(deployment: object) -> str:
    if not isinstance(deployment, dict):
        return "deployment: not reported"
    text = f"deployment: {deployment.get('status') or 'unknown'}"
    text += f" at {when(deployment.get('at'))}" if deployment.get("at") else ""
    return text + (f": {deployment.get('detail')}" if deployment.get("detail") else "")


def print_metrics(out: Console, report: dict[str, Any]) -> None:
    window = report.get("window_minutes")
    minutes = f"{window:g} min" if isinstance(window, int | float) else "the window"
    maps = [m for m in report.get("maps") or [] if isinstance(m, dict)]
    at = f", at {when(report.get('at'))}" if report.get("at") else ""
    out.print(Text(f"over the last {minutes}{at}"))
    out.print(_maps_table(maps) if maps else Text("no maps"))
    sides = [s for s in report.get("sides") or [] if isinstance(s, dict)]
    if sides:
        out.print(Text("\nthrottling (429) by side"))
        out.print(_sides_table(sides))
    out.print(Text(""))
    if isinstance(report.get("open_errors"), int):
        out.print(Text(f"open errors: {report['open_errors']:,}"))
    out.print(Text(queue_line(report.get("queue"))))
    out.print(Text(deployment_line(report.get("deployment"))))


# --- the command ----------------------------------------------------------------------------------------


def metrics(
    ctx: typer.Context,
    window: Annotated[float | None, typer.Option(
        "--window", metavar="MINUTES", min=1, show_default=False,
        help="the window the figures are counted over, in minutes (default: the engine's, 15)")] = None,
    prometheus: Annotated[bool, typer.Option(
        "--prometheus", help="print GET .../metrics/prometheus as it is (Prometheus text format, with the alerts "
                             "firing now)")] = False,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """The engine's figures per map and direction, each side's throttling, the queue and the last deployment.

    Per map and direction: changes applied (and per second), failed, lag p50/p95 (source change to target write),
    backlog age, parked records and the oldest one's age, open errors, error rate, last applied.
    """
    if prometheus and as_json:
        raise typer.BadParameter("--prometheus prints the engine's text as it is: without --json")
    with connect(ctx, url, key, MetricsApi, profile) as api:
        if prometheus:
            text = api.prometheus(window)
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            return
        report = api.metrics(window)
    if as_json:
        print_json(report)
        return
    print_metrics(stream_console(), report)
