"""The management API's OpenAPI 3.1 document, generated from the pydantic models of core.ops.contracts.

One table (`OPERATIONS`) says which routes exist, their parameters, body and answers; the document is built
from it and the models' JSON Schemas. The function app serves it (GET /api/manage/v1/openapi.json), a copy is
committed at docs/openapi.json (a test keeps it current: `python -m core.ops.openapi --write`), and the API
tests check every route's answers against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from core.maps.model import TableMap
from core.maps.scenarios import ScenarioList
from core.ops import contracts as c
from core.ops.alerts.rules import AlertRule
from core.ops.alerts.service import Evaluation
from core.ops.maphealth import MapsHealth
from core.ops.metrics import Metrics
from core.store.errors import CATEGORIES, STATUSES
from core.sync.domain import OUTCOMES
from core.sync.modes import ACTIONS

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
PREFIX = "/api/manage/v1"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: Literal["get", "post", "put", "delete"]
    path: str
    id: str
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    answers: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    media: str = "application/json"  # of the answers


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> Param:
    return Param(name, "path", schema or {"type": "string", "minLength": 1}, description, required=True)


def _query(name: str, schema: dict[str, Any], description: str = "") -> Param:
    return Param(name, "query", schema, description)


def _limit(top: int, default: int) -> Param:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": top, "default": default},
                  f"at most this many (1-{top})")


MAP = _path("map", "the map's name", {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*$", "maxLength": 100})
# Ids are one path segment: no `/`, `\\`, `?`, `#` or control characters (an error id's `|` is URL-encoded).
_SEGMENT = {"type": "string", "pattern": r"^[^\x00-\x1f\x7f/\\?#%]+$", "minLength": 1, "maxLength": 200}
ERROR_ID = _path("id", "the error's id (a Service Bus message id: URL-encode its `|`)", _SEGMENT)
RUN_ID = _path("id", "the run's id", _SEGMENT)
REVISION = _path("revision", "a stored revision number", {"type": "integer", "minimum": 1})
IF_MATCH = Param("If-Match", "header", {"type": "string", "pattern": r'^(W/)?"?\d{1,10}"?$|^\*$'},
                 'the latest revision the caller saw, in quotes ("0": none stored yet); a stale one is a 409')
RULE = _path("name", "the rule's name", {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"})
RULE_MATCH = Param("If-Match", "header", {"type": "string"}, "the rule's ETag as read (`*`: any existing "
                   "version); a changed rule is a 412")
WINDOW = _query("window_minutes", {"type": "number", "minimum": 1, "maximum": 1440, "default": 15},
                "the window the figures are over, in minutes")
REASON = [Param("x-dualwrite-reason", "header", {"type": "string"}, "why, recorded with the revision"),
          _query("reason", {"type": "string"}, "why, recorded with the revision (when not in the header)")]

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/errors", "errors_list", "The error log, newest failure first", "errors", (
        _query("map", {"type": "string"}), _query("status", {"enum": [*STATUSES, "all"], "default": "open"}),
        _query("category", {"enum": list(CATEGORIES)}), _limit(1000, 100)), answers={200: c.ErrorList}),
    Operation("post", "/errors/resubmit", "errors_resubmit", "Resubmit the open entries of a filter or a list",
              "errors", body=c.BulkAction, answers={202: c.BulkResubmitted}),
    Operation("post", "/errors/discard", "errors_discard", "Discard the open entries of a filter or a list",
              "errors", body=c.BulkAction, answers={200: c.BulkDiscarded}),
    Operation("get", "/errors/{id}", "error_get", "One entry with the target's full answer and the change",
              "errors", (ERROR_ID,), answers={200: c.ErrorDetail}),
    Operation("post", "/errors/{id}/resubmit", "error_resubmit", "Send the failed change again", "errors",
              (ERROR_ID,), answers={202: c.Resubmitted}),
    Operation("post", "/errors/{id}/discard", "error_discard", "Give up on the failed change", "errors",
              (ERROR_ID,), answers={200: c.Discarded}),
    Operation("get", "/activity", "activity_query", "What happened to each change, newest first", "activity", (
        _query("map", {"type": "string"}), _query("key", {"type": "string"}, "a record's integration key"),
        _query("since", {"type": "string", "format": "date-time"}, "default: 24 hours before `until`"),
        _query("until", {"type": "string", "format": "date-time"}, "default: now"),
        _query("outcome", {"enum": list(OUTCOMES)}), _limit(1000, 100)), answers={200: c.ActivityList}),
    Operation("get", "/modes", "modes_list", "Every map's mode, parked changes and catch-up", "modes",
              answers={200: c.ModeList}),
    Operation("get", "/modes/{map}", "mode_show", "One map's mode and its moves, newest first", "modes", (MAP,),
              answers={200: c.ModeDetail}),
    Operation("post", "/modes/{map}/{action}", "mode_move", "Pause, resume, stop or start a map", "modes",
              (MAP, _path("action", "what to do", {"enum": list(ACTIONS)})), body=c.ModeMove,
              answers={200: c.ModeView, 202: c.ModeView}),
    Operation("get", "/maps", "maps_list", "The running maps, with the revision and origin of each", "maps",
              answers={200: c.MapList}),
    Operation("get", "/maps/{map}", "map_show", "The running definition of a map", "maps", (MAP,),
              answers={200: c.MapShown}),
    Operation("put", "/maps/{map}", "map_put", "Store a changed map as its next revision", "maps",
              (MAP, IF_MATCH, *REASON), body=TableMap, answers={201: c.MapStored}),
    Operation("post", "/maps/{map}/validate", "map_validate", "Check a draft as a change would be, storing nothing",
              "maps", (MAP,), body=TableMap, answers={200: c.MapValidation}),
    Operation("post", "/maps/{map}/preview", "map_preview", "What the map (or a draft) would write for a sample record",
              "maps", (MAP,), body=c.PreviewRequest, answers={200: c.Preview}),
    Operation("get", "/maps/{map}/versions", "map_versions", "A map's stored revisions, newest first", "maps",
              (MAP,), answers={200: c.RevisionList}),
    Operation("get", "/maps/{map}/versions/{revision}", "map_version", "One stored revision with its body", "maps",
              (MAP, REVISION), answers={200: c.Revision}),
    Operation("post", "/maps/{map}/versions/{revision}/restore", "map_restore",
              "Store an earlier revision's body again as the next revision", "maps", (MAP, REVISION, IF_MATCH, *REASON),
              answers={201: c.MapStored}),
    Operation("get", "/scenarios", "scenarios_list", "The scenario bundles: each one's maps in initial-sync order, "
              "which are enabled", "maps", answers={200: ScenarioList}),
    Operation("post", "/sync/runs", "sync_run_start", "Start an initial sync, a comparison or a repair", "runs",
              body=c.RunRequest, answers={202: c.RunView}),
    Operation("get", "/sync/runs", "sync_runs", "Recent runs, newest first", "runs", (_limit(200, 20),),
              answers={200: c.RunList}),
    Operation("get", "/sync/runs/{id}", "sync_run", "One run with its progress per map", "runs", (RUN_ID,),
              answers={200: c.RunView}),
    Operation("post", "/sync/runs/{id}/cancel", "sync_run_cancel", "Cancel a run", "runs", (RUN_ID,),
              answers={200: c.RunView}),
    Operation("get", "/sync/runs/{id}/drift", "sync_run_drift", "The rows a comparison found differing", "runs", (
        RUN_ID, _query("map", {"type": "string"}),
        _query("kind", {"enum": ["missing_on_target", "missing_on_source", "differs", "failed", "sample"]}),
        _limit(10000, 1000)), answers={200: c.DriftList}),
    Operation("get", "/health", "maps_health_now", "Each map's mode, backlog, throughput and lag (last 10 minutes)",
              "health", answers={200: MapsHealth}),
    Operation("get", "/metrics", "metrics_now", "Each map and direction's figures over a window: throughput, lag, "
              "backlog, errors; throttling per side", "metrics", (WINDOW,), answers={200: Metrics}),
    Operation("get", "/metrics/prometheus", "metrics_prometheus", "The same figures in Prometheus's text format",
              "metrics", (WINDOW,), answers={200: None}, media="text/plain"),
    Operation("get", "/alerts", "alerts_now", "Every alert (rule and subject) with its state", "alerts",
              answers={200: c.AlertList}),
    Operation("get", "/alerts/history", "alerts_history", "Firings and resolutions, newest first", "alerts",
              (_limit(1000, 100), _query("rule", {"type": "string"})), answers={200: c.AlertHistory}),
    Operation("post", "/alerts/evaluate", "alerts_evaluate", "Evaluate every rule now (the timer does every minute)",
              "alerts", answers={200: Evaluation}),
    Operation("get", "/alerts/rules", "alert_rules", "The alert rules", "alerts", answers={200: c.AlertRuleList}),
    Operation("get", "/alerts/rules/{name}", "alert_rule", "One alert rule (its ETag for If-Match)", "alerts",
              (RULE,), answers={200: AlertRule}),
    Operation("put", "/alerts/rules/{name}", "alert_rule_put", "Create or replace an alert rule; the next evaluation "
              "uses it", "alerts", (RULE, RULE_MATCH), body=AlertRule, answers={200: AlertRule, 201: AlertRule}),
    Operation("delete", "/alerts/rules/{name}", "alert_rule_delete", "Delete an alert rule", "alerts", (RULE,),
              answers={204: None}),
    Operation("post", "/deploy", "deploy_now", "Register webhook steps and F&O events for the running maps",
              "deployment", answers={200: c.DeployReport, 502: c.DeployReport}),
)
HEALTH = Operation("get", "/api/health", "health", "Version and whether Table Storage and Service Bus answer",
                   "health", answers={200: c.HealthReport})


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel] | None, kind: str = "application/json") -> dict[str, Any]:
    return {kind: {"schema": _ref(model) if model else {}}}


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.id, "summary": op.summary, "tags": [op.tag]}
    if op.params:
        out["parameters"] = [{"name": p.name, "in": p.where, "required": p.required, "schema": p.schema,
                              **({"description": p.description} if p.description else {})} for p in op.params]
    if op.body is not None:
        out["requestBody"] = {"required": op.body is TableMap, "content": _json(op.body)}
    out["responses"] = {str(status): {"description": model.__doc__.strip().splitlines()[0] if model and
                                      model.__doc__ else "OK", **({"content": _json(model, op.media)}
                                                                  if status != 204 else {})}
                        for status, model in sorted(op.answers.items())}
    # Every refusal is problem+json (functions.http.PROBLEMS): 400 bad input, 404, 409, 413, 422, 503.
    out["responses"]["default"] = {"description": "a problem (RFC 9457)",
                                   "content": _json(c.Problem, "application/problem+json")}
    if op is HEALTH:
        out["security"] = []
    else:  # the Functions host itself refuses a call without the master key, with no body
        out["responses"]["401"] = {"description": "no key, or not the master (admin) key"}
    return out


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the management API (and the health probe)."""
    models: set[type[BaseModel]] = {c.Problem}
    for op in (*OPERATIONS, HEALTH):
        models |= {m for m in op.answers.values() if m is not None}
        if op.body is not None:
            models.add(op.body)
    _, schemas = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                    ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(PREFIX + op.path, {})[op.method] = _operation(op)
    paths.setdefault(HEALTH.path, {})[HEALTH.method] = _operation(HEALTH)
    return {
        "openapi": "3.1.0",
        "info": {"title": "dual-write engine: management API", "version": "1",
                 "description": "Maps, modes, runs, the error and activity logs, deployment. Locally the master key "
                                "(x-functions-key); in Azure behind App Service authentication as well."},
        "servers": [{"url": "/"}],
        "security": [{"functionKey": []}],
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}),
                       "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header",
                                                           "name": "x-functions-key"}}},
    }


def document_text() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.ops.openapi", description="print or write the document")
    parser.add_argument("--write", action="store_true", help=f"write it to {COMMITTED}")
    args = parser.parse_args(argv)
    if args.write:
        COMMITTED.parent.mkdir(exist_ok=True)
        COMMITTED.write_text(document_text(), encoding="utf-8")
        sys.stderr.write(f"wrote {COMMITTED}\n")
    else:
        sys.stdout.write(document_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
