"""`dualwrite alerts ...`: the alert rules (list them with what fires now, set one from a file or from options,
delete one), the history of alerts fired and resolved, and an evaluation now instead of at the next minute.

A client of the management API: `GET /alerts/rules`, `GET|PUT|DELETE /alerts/rules/{name}`, `GET /alerts` (each
rule's state per subject), `GET /alerts/history?limit=&rule=` (newest first) and `POST /alerts/evaluate`.
`alerts set NAME` with options changes only what they give: it reads the rule first and PUTs it back changed.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core.cli.api import (
    ApiError,
    AsJson,
    Key,
    ProfileName,
    Url,
    connect,
    print_json,
    segment,
    stream_console,
    when,
)
from core.cli.metrics import RawApi, direction
from core.ops.alerts.rules import UNITS

MAX_HISTORY = 1000

app = typer.Typer(
    name="alerts", no_args_is_help=True,
    help="Alert rules: list them with what fires now, set, delete; the history of alerts fired and resolved; "
         "evaluate the rules now.",
    epilog="Exit codes: 0 done; 1 the engine refused or answered with an error (an unknown rule, a rule it does not "
           "take: the field is named); 2 usage error.",
)


class Metric(StrEnum):
    """What a rule watches (core.ops.alerts.rules.METRICS; a test keeps them equal)."""

    errors = "errors"
    error_rate_pct = "error_rate_pct"
    lag_p95_s = "lag_p95_s"
    backlog_age_s = "backlog_age_s"
    parked_records = "parked_records"
    dead_letters = "dead_letters"
    applied_per_s = "applied_per_s"
    throttled_per_min = "throttled_per_min"
    deployment_failed = "deployment_failed"


class Op(StrEnum):
    """How the figure is compared with the threshold (core.ops.alerts.rules.COMPARE; a test keeps them equal)."""

    gt = ">"
    ge = ">="
    lt = "<"
    le = "<="


class Direction(StrEnum):
    """core.ops.meter.DIRECTIONS (a test keeps them equal)."""

    to_dataverse = "to_dataverse"
    to_fno = "to_fno"


class AlertsApi(RawApi):
    """GET /alerts/rules, GET|PUT|DELETE /alerts/rules/{name}, GET /alerts, GET /alerts/history,
    POST /alerts/evaluate."""

    def rules(self) -> list[dict[str, Any]]:
        answer = self.call("GET", "/alerts/rules")
        return [r for r in (answer.get("rules") if isinstance(answer, dict) else None) or [] if isinstance(r, dict)]

    def rule(self, name: str) -> tuple[dict[str, Any], str | None] | None:
        """The rule and its ETag; None when there is no rule of that name."""
        try:
            response = self.send("GET", f"/alerts/rules/{segment(name)}")
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ApiError(f"GET /alerts/rules/{name}: the engine's answer is no rule: {response.text[:200]}")
        return answer, response.headers.get("etag")

    def put(self, name: str, rule: dict[str, Any], if_match: str | None = None) -> tuple[dict[str, Any], bool]:
        """The rule as stored, and whether it is new (201). With `if_match` (the ETag the rule was read with), a rule
        changed meanwhile is refused (412) rather than overwritten."""
        headers = {"if-match": if_match} if if_match else None
        try:
            response = self.send("PUT", f"/alerts/rules/{segment(name)}", body=rule, headers=headers)
        except ApiError as error:
            if error.status == 412:
                raise ApiError(f"{error}: nothing was changed; run the command again to change the rule as it is "
                               "now", status=412, problem=error.problem) from None
            raise
        try:
            answer = response.json()
        except ValueError:
            raise ApiError(f"PUT /alerts/rules/{name}: the engine's answer is not JSON: "
                           f"{response.text[:200]}") from None
        return (answer if isinstance(answer, dict) else rule), response.status_code == 201

    def delete(self, name: str) -> None:
        self.send("DELETE", f"/alerts/rules/{segment(name)}")

    def alerts(self) -> list[dict[str, Any]]:
        answer = self.call("GET", "/alerts")
        return [a for a in (answer.get("alerts") if isinstance(answer, dict) else None) or [] if isinstance(a, dict)]

    def history(self, rule: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if rule:
            params["rule"] = rule
        return dict(self.call("GET", "/alerts/history", params=params))

    def evaluate(self) -> dict[str, Any]:
        return dict(self.call("POST", "/alerts/evaluate"))


# --- a rule from options --------------------------------------------------------------------------------

ANY = ("", "*")  # `--map ''` or `--map '*'`: every map (no scope); the same for --direction and --category


def _any_to_none(value: str | None) -> str | None:
    return None if value is None or value in ANY else value


def rule_changes(*, metric: str | None = None, op: str | None = None, threshold: float | None = None,
                 window: float | None = None, map_name: str | None = None, direction: str | None = None,
                 category: str | None = None, pause: bool | None = None, resume_when_clear: bool | None = None,
                 notify: bool | None = None, recipients: list[str] | None = None, cooldown: float | None = None,
                 description: str | None = None, enabled: bool | None = None) -> dict[str, Any]:
    """The fields the options give (None: not given), as the rule names them; `scope` holds only the parts given,
    an empty or `*` map, direction or category is none (every map, both directions, any category)."""
    changes: dict[str, Any] = {}
    for field, value in (("metric", metric), ("op", op), ("threshold", _plain(threshold)),
                         ("window_minutes", _plain(window)), ("pause", pause),
                         ("resume_when_clear", resume_when_clear), ("notify", notify),
                         ("cooldown_minutes", _plain(cooldown)), ("description", description), ("enabled", enabled)):
        if value is not None:
            changes[field] = str(value) if isinstance(value, StrEnum) else value
    if category is not None:
        changes["category"] = _any_to_none(category)
    scope = {part: _any_to_none(str(value)) for part, value in (("map", map_name), ("direction", direction))
             if value is not None}
    if scope:
        changes["scope"] = scope
    if recipients is not None:
        changes["recipients"] = [r.strip() for r in recipients if r.strip()]  # `--recipient ''`: nobody
    return changes


def _plain(value: float | None) -> float | int | None:
    """5.0 as 5: what the user typed, not a float's spelling of it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def merge_rule(base: dict[str, Any] | None, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The rule to PUT: `base` (the stored rule, a file's, or nothing for a new one) with `changes` over it; the
    scope is merged part by part, so `--direction` keeps the map a rule has. The name is always NAME."""
    rule = {k: v for k, v in (base or {}).items()}
    for field, value in changes.items():
        if field == "scope":
            scope = rule.get("scope")
            rule["scope"] = {**(scope if isinstance(scope, dict) else {}), **value}
        else:
            rule[field] = value
    rule["name"] = name
    return rule


def read_rule_file(path: Path, name: str) -> dict[str, Any]:
    """A rule's JSON from a file (`-`: stdin); its name, when it has one, must be NAME."""
    try:
        text = typer.get_text_stream("stdin").read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror or error}", param_hint="--file") from None
    try:
        rule = json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(f"{path} is not JSON: {error}", param_hint="--file") from None
    if not isinstance(rule, dict):
        raise typer.BadParameter(f"{path} holds no JSON object (a rule)", param_hint="--file")
    if rule.get("name") not in (None, name):
        raise typer.BadParameter(f"{path} is rule {rule.get('name')!r}, not {name!r}", param_hint="--file")
    return rule


# --- output ---------------------------------------------------------------------------------------------


def figure(value: object) -> str:
    """A measured value or threshold: 3, 12.5, 0.33; empty for none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) >= 0.01 else f"{value:.2g}"


def condition(rule: dict[str, Any]) -> str:
    """`lag_p95_s > 60 s over 15 min`, `errors (application) >= 10 errors over 15 min`: as the engine words it in
    alerts and their history (core.ops.alerts.rules.AlertRule.condition)."""
    metric = str(rule.get("metric"))
    what = metric + (f" ({rule.get('category')})" if rule.get("category") else "")
    threshold, window = rule.get("threshold"), rule.get("window_minutes")
    unit = UNITS.get(metric, "")
    text = f"{what} {rule.get('op')} {_g(threshold)}{' ' + unit if unit else ''}"
    return text + (f" over {_g(window)} min" if isinstance(window, int | float) else "")


def _g(value: object) -> str:
    return format(value, "g") if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def scope(rule: dict[str, Any]) -> str:
    """`customers to F&O`, `every map`; for the engine's own figures, `each side` (throttling: the direction names
    the side written to) or `the engine` (deployment)."""
    found = rule.get("scope")
    part: dict[str, Any] = found if isinstance(found, dict) else {}
    if rule.get("metric") == "throttled_per_min":
        return SIDE_OF.get(str(part.get("direction")), "each side")
    if rule.get("metric") == "deployment_failed":
        return "the engine"
    text = str(part.get("map") or "every map")
    return text + (f" {direction(part.get('direction'))}" if part.get("direction") else "")


SIDE_OF = {"to_dataverse": "Dataverse", "to_fno": "F&O"}


def actions(rule: dict[str, Any]) -> str:
    """What a firing rule does: `notify a@x (cool-down 30 min), pause the map, resume when clear`."""
    done: list[str] = []
    if rule.get("notify"):
        recipients = [str(r) for r in rule.get("recipients") or []]
        text = "notify" + (f" {', '.join(recipients)}" if recipients else "")
        if isinstance(rule.get("cooldown_minutes"), int | float):
            text += f" (cool-down {figure(rule.get('cooldown_minutes'))} min)"
        done.append(text)
    if rule.get("pause"):
        done.append("pause the map" + (", resume when clear" if rule.get("resume_when_clear") else ""))
    return "; ".join(done) or "none (history only)"


def notifications(value: object) -> str:
    if not isinstance(value, dict):
        return ""
    return ", ".join(f"{channel}: {outcome}" for channel, outcome in value.items())


def _firing(alerts: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a.get("rule") == rule and a.get("state") == "firing"]


def state(rule: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
    firing = _firing(alerts, str(rule.get("name")))
    if firing:
        return "firing: " + ", ".join(str(a.get("subject")) for a in firing)
    return "ok" if rule.get("enabled", True) else "disabled"


def _rules_table(rules: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("rule", "enabled", "condition", "scope", "actions", "state"):
        table.add_column(name, no_wrap=name in ("rule", "enabled"), overflow="fold")
    for rule in rules:
        now = state(rule, alerts)
        table.add_row(Text(str(rule.get("name") or "")), "yes" if rule.get("enabled", True) else "no",
                      Text(condition(rule)), Text(scope(rule)), Text(actions(rule)),
                      Text(now, style="bold red" if now.startswith("firing") else ""))
    return table


def _alerts_table(alerts: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("rule", "subject", "value", "threshold", "since", "notified", "map paused"):
        table.add_column(name, justify="right" if name in ("value", "threshold") else "left", no_wrap=True)
    for alert in alerts:
        notified = when(alert.get("last_notified_at"))
        sent = notifications(alert.get("notifications"))
        table.add_row(Text(str(alert.get("rule") or "")), Text(str(alert.get("subject") or "")),
                      figure(alert.get("value")), figure(alert.get("threshold")), when(alert.get("since")),
                      Text(f"{notified} ({sent})" if notified and sent else notified or sent),
                      "yes" if alert.get("paused_map") else "")
    return table


def _history_table(entries: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("at", "rule", "subject", "kind", "value", "threshold", "condition", "actions", "notifications"):
        table.add_column(name, justify="right" if name in ("value", "threshold") else "left",
                         no_wrap=name not in ("condition", "actions", "notifications"), overflow="fold")
    for entry in entries:
        kind = str(entry.get("kind") or "")
        table.add_row(when(entry.get("at")), Text(str(entry.get("rule") or "")), Text(str(entry.get("subject") or "")),
                      Text(kind, style="bold red" if kind == "fired" else ""), figure(entry.get("value")),
                      figure(entry.get("threshold")), Text(str(entry.get("condition") or "")),
                      Text(", ".join(str(a) for a in entry.get("actions") or [])),
                      Text(notifications(entry.get("notifications"))))
    return table


def _print_rule(out: Console, rule: dict[str, Any]) -> None:
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in (("condition", condition(rule)), ("scope", scope(rule)), ("actions", actions(rule)),
                         ("enabled", "yes" if rule.get("enabled", True) else "no"),
                         ("description", rule.get("description"))):
        if value not in (None, ""):
            table.add_row(label, Text(str(value)))
    out.print(table)


# --- commands -------------------------------------------------------------------------------------------

RuleName = Annotated[str, typer.Argument(metavar="NAME", show_default=False, help="the rule's name")]


@app.command(name="list")
def list_(
    ctx: typer.Context,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """The alert rules (condition, scope, actions, enabled) with their state now: firing on which subjects."""
    with connect(ctx, url, key, AlertsApi, profile) as api:
        rules, alerts = api.rules(), api.alerts()
    if as_json:
        print_json({"rules": rules, "alerts": alerts})
        return
    out = stream_console()
    if not rules:
        out.print(Text("no alert rules: add one with dualwrite alerts set NAME --metric ... --threshold ..."))
    else:
        out.print(_rules_table(rules, alerts))
    firing = [a for a in alerts if a.get("state") == "firing"]
    if firing:
        out.print(Text(f"\nfiring now: {len(firing)}"))
        out.print(_alerts_table(firing))


@app.command(name="set")
def set_(
    ctx: typer.Context,
    name: RuleName,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", metavar="RULE.json", show_default=False,
        help="the whole rule as JSON ('-': stdin); options given too change it further")] = None,
    metric: Annotated[Metric | None, typer.Option(show_default=False, help="what the rule watches")] = None,
    op: Annotated[Op | None, typer.Option(metavar="[>|>=|<|<=]", show_default=False,
                                          help="how the value is compared with the threshold")] = None,
    threshold: Annotated[float | None, typer.Option(show_default=False, help="the value compared with")] = None,
    window: Annotated[float | None, typer.Option(
        "--window", metavar="MINUTES", min=1, show_default=False,
        help="the minutes the metric is counted over (counted per minute: at least 1)")] = None,
    map_name: Annotated[str | None, typer.Option(
        "--map", metavar="MAP", show_default=False, help="only this map ('' or '*': every map)")] = None,
    direction: Annotated[str | None, typer.Option(
        "--direction", metavar="[to_dataverse|to_fno]", show_default=False,
        help="only this direction ('' or '*': both)")] = None,
    category: Annotated[str | None, typer.Option(
        show_default=False, help="errors of this category only ('' or '*': any)")] = None,
    pause: Annotated[bool | None, typer.Option(
        "--pause/--no-pause", show_default=False, help="pause the map while the rule fires")] = None,
    resume_when_clear: Annotated[bool | None, typer.Option(
        "--resume-when-clear/--no-resume-when-clear", show_default=False,
        help="resume a map the rule paused once it no longer fires")] = None,
    notify: Annotated[bool | None, typer.Option(
        "--notify/--no-notify", show_default=False, help="send notifications (e-mail, webhook) when it fires")] = None,
    recipients: Annotated[list[str] | None, typer.Option(
        "--recipient", metavar="ADDRESS", show_default=False,
        help="who is notified (repeat it; replaces the rule's list; --recipient '' for nobody)")] = None,
    cooldown: Annotated[float | None, typer.Option(
        "--cooldown", metavar="MINUTES", min=0, show_default=False,
        help="minutes between notifications of the same alert")] = None,
    description: Annotated[str | None, typer.Option(show_default=False, help="what the rule is for")] = None,
    enabled: Annotated[bool | None, typer.Option(
        "--enable/--disable", show_default=False, help="evaluate the rule, or keep it without evaluating it")] = None,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Create or change the rule NAME: from --file, or with options that change only what they give.

    With options alone, the stored rule is read first and PUT back with them (If-Match: a rule changed meanwhile is
    refused, not overwritten); a new rule is the options and the engine's defaults. The engine uses it at its next
    evaluation, on every instance.
    """
    if direction is not None and direction not in (*ANY, *(str(d) for d in Direction)):
        raise typer.BadParameter(f"{direction!r} is none of to_dataverse, to_fno ('' or '*': both)",
                                 param_hint="--direction")
    changes = rule_changes(metric=metric, op=op, threshold=threshold, window=window, map_name=map_name,
                           direction=direction, category=category, pause=pause, resume_when_clear=resume_when_clear,
                           notify=notify, recipients=recipients, cooldown=cooldown, description=description,
                           enabled=enabled)
    base = read_rule_file(file, name) if file is not None else None
    if base is None and not changes:
        raise typer.BadParameter("give the rule: --file RULE.json, or the options to set (--metric, --threshold, ...)")
    etag = None
    with connect(ctx, url, key, AlertsApi, profile) as api:
        if base is None:
            found = api.rule(name)  # None: a new rule, made of the options alone
            base, etag = found if found is not None else (None, None)
        stored, created = api.put(name, merge_rule(base, name, changes), if_match=etag)
    if as_json:
        print_json(stored)
        return
    out = stream_console()
    out.print(Text(f"rule {name} {'created' if created else 'updated'}"))
    _print_rule(out, stored)


@app.command()
def delete(
    ctx: typer.Context,
    name: RuleName,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Delete the rule NAME (an alert of it that fires resolves at the next evaluation; its history stays)."""
    with connect(ctx, url, key, AlertsApi, profile) as api:
        api.delete(name)
    stream_console().print(Text(f"rule {name} deleted"))


@app.command()
def history(
    ctx: typer.Context,
    rule: Annotated[str | None, typer.Option("--rule", metavar="NAME", show_default=False,
                                             help="only this rule's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_HISTORY, help="at most this many, newest first")] = 100,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Alerts fired and resolved, newest first: the value against the threshold, what was done and each
    notification's outcome."""
    with connect(ctx, url, key, AlertsApi, profile) as api:
        answer = api.history(rule, limit)
    if as_json:
        print_json(answer)
        return
    entries = [e for e in answer.get("entries") or [] if isinstance(e, dict)]
    out = stream_console()
    if not entries:
        out.print(Text("no alerts fired or resolved" + (f" for rule {rule}" if rule else "")))
        return
    out.print(_history_table(entries))
    if len(entries) >= limit:
        out.print(Text(f"(the newest {limit}; more with --limit, up to {MAX_HISTORY})"))


@app.command()
def evaluate(
    ctx: typer.Context,
    as_json: AsJson = False,
    url: Url = None,
    key: Key = None,
    profile: ProfileName = None,
) -> None:
    """Evaluate every enabled rule now (the engine does every minute) and say what fired and what resolved."""
    with connect(ctx, url, key, AlertsApi, profile) as api:
        answer = api.evaluate()
    if as_json:
        print_json(answer)
        return
    out = stream_console()
    count = answer.get("rules")
    out.print(Text(f"evaluated {count if isinstance(count, int) else '?'} rule(s)"
                   + (f" at {when(answer.get('at'))}" if answer.get("at") else "")))
    changed = False
    for kind in ("fired", "resolved"):
        for item in answer.get(kind) or []:
            if isinstance(item, dict):
                changed = True
                value = figure(item.get("value"))
                out.print(Text(f"{kind}: {item.get('rule')} on {item.get('subject')}"
                               + (f" (value {value})" if value else "")))
    if not changed:
        out.print(Text("nothing fired or resolved"))
