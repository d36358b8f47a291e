"""What metrics and tracing cost live sync: the same phases with telemetry off and on, one stack, one run.

    .venv/bin/python -m bench.telemetry_cost [--changes 200] [--rounds 2] [--modes off,on,otlp] [--workers 8]
                                             [--warmup 20] [--timeout 120] [--poll 0.1]

Starts the stack once (Azurite, the emulator, both simulators seeded; bench.live_sync's harness), then, per round
and mode, a Functions host of its own over it (one at a time; each deploys the webhooks and events to itself) and
runs bench.live_sync's three base phases of `--changes` records: customers created in F&O, renamed in F&O, their
accounts renamed in Dataverse, each until every value shows up on the other side. Modes:

- `off`: TELEMETRY_ENABLED=false (no per-minute counting, no spans);
- `on`: TELEMETRY_ENABLED=true with no exporter configured, the local default: the per-minute counts written to
  Table Storage (core.ops.meter) and spans through the OpenTelemetry API without an SDK (no-op);
- `otlp`: TELEMETRY_ENABLED=true and OTEL_EXPORTER_OTLP_ENDPOINT at a sink in this process: the SDK records every
  span and exports spans and metrics over OTLP/HTTP (protobuf), as a deployment with a collector does.

The order of the modes turns each round (off, on, otlp; then on, otlp, off; ...), so drift of the stack (tables
and databases growing) does not favour one mode. Each host first syncs `--warmup` creates that are not counted
(start-up: imports, first tokens, connection pools). Prints one JSON object: per run the phases as
bench.live_sync reports them, per mode the sums and medians, and `ratios` of each mode against `off`
(throughput: applied/s; CPU: host CPU seconds per applied change; Table Storage requests per change).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.live_sync import HEADERS, Meter, Stack, TableCounter, phases, run_phase, start_host, start_simulators
from devstack.processes import free_port
from devstack.up import wait_for_deployment

MODES = ("off", "on", "otlp")
NAMES = ("fno_creates_to_dataverse", "fno_updates_to_dataverse", "dataverse_updates_to_fno")
# Set in the bench's shell, these would reach every host (the host lets the environment beat its settings file).
_INHERITED = ("TELEMETRY_ENABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER",
              "APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")


class OtlpSink:
    """An OTLP/HTTP receiver (protobuf) that counts what it is sent and answers success."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans = 0
        self.trace_requests = 0
        self.metric_points = 0
        self.metric_requests = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.endswith("/v1/traces"):
                    request = ExportTraceServiceRequest.FromString(body)
                    count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                    with sink._lock:
                        sink.spans += count
                        sink.trace_requests += 1
                    answer = ExportTraceServiceResponse().SerializeToString()
                else:
                    metrics = ExportMetricsServiceRequest.FromString(body)
                    points = sum(len(getattr(m, m.WhichOneof("data")).data_points)
                                 for r in metrics.resource_metrics for s in r.scope_metrics for m in s.metrics
                                 if m.WhichOneof("data"))
                    with sink._lock:
                        sink.metric_points += points
                        sink.metric_requests += 1
                    answer = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"spans": self.spans, "trace_requests": self.trace_requests, "metric_points": self.metric_points,
                    "metric_requests": self.metric_requests}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def mode_settings(mode: str, sink: OtlpSink) -> dict[str, str]:
    if mode == "off":
        return {"TELEMETRY_ENABLED": "false"}
    if mode == "on":
        return {"TELEMETRY_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    # The batch span processor's defaults (5 s, batches of 512); metrics every 10 s so a run sees several exports.
    return {"TELEMETRY_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
            "OTEL_METRIC_EXPORT_INTERVAL": "10000"}


def run_mode(client: httpx.Client, stack: Stack, folder: Path, mode: str, sink: OtlpSink, tables: TableCounter,
             args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """One host with this mode over the stack: deploy to it, sync the warm-up, run the three phases, stop it."""
    folder.mkdir(parents=True)
    settings = start_host(stack, folder, **mode_settings(mode, sink))
    host = stack.processes[-1]
    try:
        wait_for_deployment(settings, threading.Event(), dataverse=stack.dataverse, fno=stack.fno)
        # The endpoints of the previous host are updated in place; after this they point at this one.
        report = client.post(f"{stack.host}/api/manage/v1/deploy", headers={
            "x-functions-key": settings["DEVHOST_MASTER_KEY"]}, timeout=300)
        if report.status_code != 200 or not report.json().get("ok"):
            raise RuntimeError(f"deployment to the {mode} host failed: {report.status_code} {report.text[:500]}")
        assert host.proc is not None
        meter = Meter(client, stack, host.proc.pid, tables)
        if args.warmup:
            warmup = next(iter(phases(client, stack, f"W{tag}", args.warmup, names=("warmup", "unused"),
                                      poll=args.poll)))
            run_phase(client, stack, warmup, meter, workers=args.workers, timeout=args.timeout)
        exported = sink.counts()
        results: dict[str, Any] = {}
        for phase in phases(client, stack, f"P{tag}", args.changes, names=NAMES, poll=args.poll):
            results[phase.name] = run_phase(client, stack, phase, meter, workers=args.workers, timeout=args.timeout)
            print(f"{mode}: {phase.name}: {results[phase.name]['applied']} of {results[phase.name]['changes']} "
                  f"applied, {results[phase.name]['applied_per_s']}/s, "
                  f"{results[phase.name]['engine']['cpu_s_per_1000_changes']} CPU s per 1,000", file=sys.stderr)
        after = sink.counts()
        return {"phases": results, "deployed": report.json().get("counts"),
                "otlp": {k: after[k] - exported[k] for k in after} if mode == "otlp" else None}
    finally:
        host.stop()
        stack.processes.remove(host)


def summary(runs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """A mode's runs added up: applied and CPU summed over every phase of every round; applied/s and latency
    medians per phase over the rounds, and their mean over the phases."""
    mine = [r for r in runs if r["mode"] == mode]
    phases_of = [p for r in mine for p in r["phases"].values()]
    applied = sum(p["applied"] for p in phases_of)
    cpu = sum(p["engine"]["cpu_s"] for p in phases_of)
    table = sum(p["engine"]["table_requests"] for p in phases_of)
    per_phase = {name: {
        "applied_per_s": statistics.median(r["phases"][name]["applied_per_s"] for r in mine),
        "latency_p50_ms": statistics.median(r["phases"][name]["latency_ms"]["p50"] or 0 for r in mine),
    } for name in NAMES}
    return {
        "runs": len(mine), "changes": sum(p["changes"] for p in phases_of), "applied": applied,
        "applied_per_s": round(statistics.mean(v["applied_per_s"] for v in per_phase.values()), 2),
        "per_phase": per_phase,
        "cpu_s": round(cpu, 2), "cpu_s_per_1000_changes": round(cpu / applied * 1000, 2) if applied else None,
        "table_requests_per_change": round(table / applied, 3) if applied else None,
    }


def ratios(per_mode: dict[str, dict[str, Any]]) -> dict[str, Any]:
    base = per_mode.get("off")
    if not base:
        return {}
    out: dict[str, Any] = {}
    for mode, figures in per_mode.items():
        if mode == "off":
            continue
        out[f"{mode}_vs_off"] = {
            "applied_per_s": round(figures["applied_per_s"] / base["applied_per_s"], 3) if base["applied_per_s"]
            else None,
            "cpu_s_per_change": round(figures["cpu_s_per_1000_changes"] / base["cpu_s_per_1000_changes"], 3)
            if figures["cpu_s_per_1000_changes"] and base["cpu_s_per_1000_changes"] else None,
            "table_requests_per_change": round(figures["table_requests_per_change"]
                                               / base["table_requests_per_change"], 3)
            if figures["table_requests_per_change"] and base["table_requests_per_change"] else None,
        }
    return out


def modes_list(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}; got {text!r}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200, help="records per phase (three phases per run)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode (the order of the modes turns)")
    parser.add_argument("--modes", type=modes_list, default=list(MODES), help="comma separated: off,on,otlp")
    parser.add_argument("--workers", type=int, default=8, help="threads writing to the source (users)")
    parser.add_argument("--warmup", type=int, default=20, help="creates synced per host before measuring (0: none)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a phase waits for its changes")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval of the other side (s)")
    args = parser.parse_args(argv)
    for name in _INHERITED:
        os.environ.pop(name, None)
    runs: list[dict[str, Any]] = []
    sink = OtlpSink()
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        folder = Path(tmp)
        stack = start_simulators(folder)
        try:
            with httpx.Client(headers=HEADERS, timeout=60,
                              limits=httpx.Limits(max_connections=args.workers + 4)) as client:
                tables = TableCounter(stack.azurite_log)
                for round_no in range(args.rounds):
                    shift = round_no % len(args.modes)
                    for mode in args.modes[shift:] + args.modes[:shift]:
                        tag = uuid.uuid4().hex[:5].upper()
                        run = run_mode(client, stack, folder / f"host-{round_no}-{mode}", mode, sink, tables, args,
                                       tag)
                        runs.append({"round": round_no, "mode": mode, **run})
        finally:
            stack.stop()
            sink.stop()
    per_mode = {mode: summary(runs, mode) for mode in args.modes}
    otlp_runs = [r["otlp"] for r in runs if r["otlp"]]
    otlp_applied = per_mode.get("otlp", {}).get("applied") or 0
    print(json.dumps({
        "benchmark": "telemetry_cost",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "changes_per_phase": args.changes,
        "rounds": args.rounds,
        "warmup_changes_per_run": args.warmup,
        "per_mode": per_mode,
        "ratios": ratios(per_mode),
        "otlp_export": {
            "spans": sum(r["spans"] for r in otlp_runs),
            "spans_per_applied_change": round(sum(r["spans"] for r in otlp_runs) / otlp_applied, 2)
            if otlp_applied else None,
            "trace_requests": sum(r["trace_requests"] for r in otlp_runs),
            "metric_points": sum(r["metric_points"] for r in otlp_runs),
            "metric_requests": sum(r["metric_requests"] for r in otlp_runs),
        } if otlp_runs else None,
        "runs": runs,
    }, indent=2))


if __name__ == "__main__":
    main()
