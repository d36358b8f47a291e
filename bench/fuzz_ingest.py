"""Fuzz both ingest routes over HTTP: what a hostile or broken sender can make the Functions host answer.

    .venv/bin/python -m bench.fuzz_ingest [--inputs 100000] [--seed 18] [--concurrency 16] [--failures DIR]

Starts Azurite (in memory), the Service Bus emulator and the local Functions host serving the ingest
functions and health alone (`tests/fuzz/fuzz_app.py`: no apply consuming the changes queue), then posts
`--inputs` bodies, alternating POST /api/dataverse/webhook and POST /api/fno/events, from `--concurrency`
callers. The bodies are mutations of real payload shapes (bodies captured from the Dataverse and F&O
simulators' payload builders, the reference's examples, and shapes built here with the Dataverse
simulator's own value encoders: EntityCollection, EntityReferenceCollection, aliased values...) and
generated ones: values replaced anywhere by hostile ones (numbers of thousands of digits or exponents
such as 1E+2147483648, /Date(ms)/ out of range, lone surrogates, lists and objects where a text belongs,
NaN), fields added and removed, nesting hundreds of thousands deep, bytes flipped, cut or repeated, and
bodies over the size limit. A prober asks GET /api/health every 0.5 s meanwhile.

Prints one JSON object: inputs, per route the count per status, 5xx and transport failures (each input
saved to `--failures`, with the answer), inputs per second, the health probe's latency (p50/max: a body
that blocks the host's event loop shows there; `health_idle_ms`: the same check before the run) and
whether the host was alive and healthy at the end. The short run of `make test` (tests/fuzz) uses the same
generator and runner.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from devstack.dataverse.webhooks import date_literal, entity_reference, wire_body
from devstack.processes import ROOT, ManagedProcess, free_port, python_module

PAYLOADS = ROOT / "tests" / "unit" / "events" / "payloads"
DATAVERSE_SHAPES = ["ref_1_7_1_update", "ref_1_7_2_delete", "ref_1_7_3_trimmed", "dv_account_create",
                    "dv_account_update", "dv_account_delete"]
FNO_SHAPES = ["fno_business_create", "fno_business_delete", "fno_data_create", "fno_data_update", "fno_data_delete",
              "fno_test_message"]
ROUTES = {"dataverse": "dataverse/webhook", "fno": "fno/events"}
INGEST_APP = "tests.fuzz.fuzz_app:app"  # ingest and health, no apply
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
MAX_BODY = 1024 * 1024
NAMES = ["MessageName", "PrimaryEntityName", "InputParameters", "BusinessEventId", "ControlNumber", "EventId", "key",
         "value", "__type", "Value", "Attributes"]
FUNCTION_KEY = "fuzz-function-key"
MASTER_KEY = "fuzz-master-key"


class Raw:
    """A JSON token written as is (what json.dumps would not write: huge numbers, NaN, escapes)."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{encode(k) if isinstance(k, Raw) else json.dumps(k)}:{encode(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def _shape(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text(), parse_float=Decimal)


def _with_attributes(document: dict[str, Any], values: list[Any]) -> dict[str, Any]:
    """The Dataverse update shape with these values added to its Target (keys x0, x1, ...)."""
    target = json.loads(json.dumps(document["InputParameters"][0]["value"], default=str), parse_float=Decimal)
    target["Attributes"] = [*target["Attributes"], *({"key": f"x{i}", "value": v} for i, v in enumerate(values))]
    return {**document, "InputParameters": [{"key": "Target", "value": target}]}


class Ref:  # what the simulator's entity_reference takes
    def __init__(self, table: str, id: str) -> None:
        self.table, self.id = table, id


def simulator_values() -> list[Any]:
    """Values of every type a RemoteExecutionContext carries, built with the Dataverse simulator's encoders."""
    ref = entity_reference(Ref("contact", "6d81597f-0f9f-e711-8122-000d3aa2331c"), "Someone")  # type: ignore[arg-type]
    party = {"__type": f"Entity:{CONTRACTS}", "Attributes": [{"key": "partyid", "value": ref}],
             "LogicalName": "activityparty", "Id": "00000000-0000-0000-0000-000000000000"}
    return [
        ref, party, [ref, ref], date_literal("2026-12-04T18:00:00Z"), date_literal("1900-01-01T00:00:00Z"),
        {"__type": f"EntityCollection:{CONTRACTS}", "Entities": [party, party], "EntityName": "activityparty",
         "MoreRecords": False, "PagingCookie": None, "TotalRecordCount": -1},
        {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 3},
        [{"__type": f"OptionSetValue:{CONTRACTS}", "Value": 1}, {"__type": f"OptionSetValue:{CONTRACTS}", "Value": 2}],
        {"__type": f"OptionSetValueCollection:{CONTRACTS}", "Values": [1, 2]},
        {"__type": f"Money:{CONTRACTS}", "Value": Decimal("1234.5678901234")},
        {"__type": f"BooleanManagedProperty:{CONTRACTS}", "CanBeChanged": True, "Value": True},
        {"__type": f"AliasedValue:{CONTRACTS}", "AttributeLogicalName": "name", "EntityLogicalName": "account",
         "Value": "Contoso"},
        {"__type": "KeyValuePairOfstringstring:#System.Collections.Generic", "key": "contact", "value": "Update"},
        {"__type": f"SomethingNew:{CONTRACTS}", "Whatever": {"deep": [1, 2, {"x": None}]}},
    ]


def hostile_values(rng: random.Random) -> Any:
    """One value a sender should never send."""
    pick = rng.randrange(22)
    if pick == 0:
        return Raw(rng.choice(["1E+2147483648", "-1E+2147483648", "1e-2147483648", "1E400", "NaN", "Infinity",
                               "-Infinity", "1E+999999999", "1E+99999999999999999999", "-2.5e-99999999999999999999",
                               f"1E{rng.randint(-(10**30), 10**30)}"]))
    if pick == 1:
        return Raw(("-" if rng.random() < 0.5 else "") + "9" * rng.choice([20, 41, 4301, 5000, 20000]))
    if pick == 2:
        return Raw("0." + "1" * rng.choice([39, 41, 5000]))
    if pick == 3:
        return f"/Date({rng.choice([10**17, -(10**17), 253402300800000, -62135596800001, 10**400])})/"
    if pick == 4:
        return Raw('"' + rng.choice(["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d", "\\ud83d\\ude00"]) + '"')
    if pick == 5:
        return rng.choice([[], {}, [1], {"a": [1]}, [[[]]], {"__type": "Money:x"}])
    if pick == 6:
        return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": hostile_values(rng)}
    if pick == 7:
        return {"__type": f"Money:{CONTRACTS}", "Value": hostile_values(rng)}
    if pick == 8:
        return {"__type": f"EntityReference:{CONTRACTS}", "Id": hostile_values(rng), "LogicalName": hostile_values(rng)}
    if pick == 9:
        return rng.choice(simulator_values())
    if pick == 10:
        depth = rng.choice([10, 63, 64, 65, 200, 5000])
        return Raw("[" * depth + "1" + "]" * depth)
    if pick == 11:
        return rng.choice([None, True, False, 0, -1, 2**31, 2**63, 2**64, Decimal("0.5"), Decimal("-0E-7")])
    if pick == 12:
        return rng.choice(["", " ", "Create", "Update", "Delete", "Assign", "usmf", "US-001", "\x00", "é" * 300])
    if pick == 13:
        return rng.choice(["acf5b83d-06a1-4ef3-b78f-c2eca283e6ad", "{ACF5B83D-06A1-4EF3-B78F-C2ECA283E6AD}",
                           "00000000-0000-0000-0000-000000000000", "not-a-guid"])
    if pick == 14:
        return rng.choice(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                           "2026-13-45T99:99:99Z", "2026-01-01T00:00:00.12345678901234567890Z"])
    if pick == 15:
        return [{"key": rng.choice(["Target", "PreImage", "x", ""]), "value": hostile_values(rng)}]
    if pick == 16:
        return {"key": hostile_values(rng), "value": hostile_values(rng)}
    if pick == 17:
        return "x" * rng.choice([1000, 100_000])
    if pick == 18:
        return Raw('"' + "\\u0000" * 10 + '"')
    if pick == 19:
        return {Raw('"\\ud800"'): 1}
    if pick == 20:
        return rng.choice(["/Date(0)/", "/Date(-0)/", "/Date(1+9999)/", "/Date(" + "1" * 30 + ")/"])
    return rng.randint(-(2**70), 2**70)


def positions(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += positions(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += positions(item, (*path, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], make: Any) -> Any:
    if not path:
        return make(document)
    head, rest = path[0], path[1:]
    if isinstance(document, dict) and head in document:
        return {**document, head: replaced(document[head], rest, make)}
    if isinstance(document, list) and isinstance(head, int) and head < len(document):
        return [replaced(item, rest, make) if index == head else item for index, item in enumerate(document)]
    return make(document)  # the path went away with an earlier mutation: this level instead


@dataclass
class Generator:
    """Deterministic fuzz inputs: (route, body bytes, extra headers)."""

    seed: int = 18
    rng: random.Random = field(init=False)
    shapes: dict[str, list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        update = _shape("ref_1_7_1_update")
        self.shapes = {
            "dataverse": [*(_shape(n) for n in DATAVERSE_SHAPES), _with_attributes(update, simulator_values())],
            "fno": [*(_shape(n) for n in FNO_SHAPES), [_shape("fno_data_update"), _shape("fno_business_create")]],
        }
        self._positions = {side: [positions(s) for s in shapes] for side, shapes in self.shapes.items()}

    def one(self, index: int) -> tuple[str, bytes, dict[str, str]]:
        rng = self.rng
        side = "dataverse" if index % 2 == 0 else "fno"
        which = rng.randrange(len(self.shapes[side]))
        document = self.shapes[side][which]
        spots = self._positions[side][which]
        kind = rng.random()
        headers: dict[str, str] = {}
        if kind < 0.02:  # the shape as it is (with the simulator's own serializer for Dataverse)
            body = (wire_body(json.loads(encode(document)))[0] if side == "dataverse" else encode(document)).encode()
        elif kind < 0.62:  # values replaced, fields added or removed
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                path = rng.choice(spots)
                op = rng.random()
                if op < 0.7 or not path:
                    document = replaced(document, path, lambda _old: hostile_values(rng))
                elif op < 0.85:
                    document = replaced(document, path[:-1], lambda parent, key=path[-1]: _without(parent, key))
                else:
                    document = replaced(document, path[:-1], lambda parent: _added(parent, rng))
                spots = positions(document)
            body = encode(document).encode()
        elif kind < 0.82:  # bytes flipped, cut, repeated
            body = _byte_mutated(encode(document).encode(), rng)
        elif kind < 0.95:  # generated documents
            body = encode(self._generated(rng, 0)).encode()
        elif kind < 0.995:  # nesting
            depth = rng.choice([64, 65, 1000, 10_000, 100_000, 400_000])
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
            body = opener * depth + b"1" + closer * depth
            if rng.random() < 0.5:
                body = body[: len(body) // 2]
        else:  # over the size limit, or empty
            body = b"" if rng.random() < 0.3 else b'{"a":"' + b"x" * (MAX_BODY + rng.randrange(1000)) + b'"}'
        if rng.random() < 0.05:
            headers["Content-Type"] = rng.choice(["text/plain", "application/xml", "application/json; charset=latin1"])
        if side == "dataverse" and rng.random() < 0.05:
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        return ROUTES[side], body, headers

    def _generated(self, rng: random.Random, depth: int) -> Any:
        pick = rng.random()
        if depth > 4 or pick < 0.4:
            return hostile_values(rng)
        if pick < 0.7:
            return {rng.choice(NAMES): self._generated(rng, depth + 1) for _ in range(rng.randrange(6))}
        return [self._generated(rng, depth + 1) for _ in range(rng.randrange(5))]


def _without(parent: Any, key: Any) -> Any:
    if isinstance(parent, dict):
        return {k: v for k, v in parent.items() if k != key}
    if isinstance(parent, list):
        return [v for i, v in enumerate(parent) if i != key]
    return parent


def _added(parent: Any, rng: random.Random) -> Any:
    if isinstance(parent, dict):
        return {**parent, rng.choice(["x", "Value", "__type", "key", "Attributes", ""]): hostile_values(rng)}
    if isinstance(parent, list):
        return [*parent, rng.choice([{"key": "x", "value": hostile_values(rng)}, hostile_values(rng)])]
    return parent


def _byte_mutated(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.choice([1, 1, 2, 5])):
        if not data:
            break
        at = rng.randrange(len(data))
        op = rng.randrange(5)
        if op == 0:
            data[at] = rng.randrange(256)
        elif op == 1:
            del data[at:]
        elif op == 2:
            data[at:at] = bytes(rng.choice([b"\\", b'"', b"{", b"[", b"\\u", b"\\ud800", b"\xff", b"\xc3", b"\x00"]))
        elif op == 3:
            end = min(len(data), at + rng.randrange(1, 200))
            data[at:at] = data[at:end] * rng.randrange(1, 50)
        else:
            del data[at: at + rng.randrange(1, 20)]
    return bytes(data)


@dataclass
class Result:
    inputs: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: {"dataverse": Counter(), "fno": Counter()})
    failures: list[dict[str, Any]] = field(default_factory=list)
    transport_errors: int = 0
    health_ms: list[float] = field(default_factory=list)
    health_idle_ms: float = 0.0
    seconds: float = 0.0
    healthy_at_end: bool = False
    health_at_end: Any = None

    @property
    def server_errors(self) -> int:
        return sum(n for counts in self.statuses.values() for status, n in counts.items() if status >= 500)

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.health_ms) or [0.0]
        return {
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "inputs_per_s": round(self.inputs / self.seconds, 1) if self.seconds else None,
            "statuses": {route: {str(k): v for k, v in sorted(c.items())} for route, c in self.statuses.items()},
            "server_errors_5xx": self.server_errors,
            "transport_errors": self.transport_errors,
            "failures_saved": len(self.failures),
            "health_idle_ms": round(self.health_idle_ms, 1),
            "health_probes": len(self.health_ms),
            "health_p50_ms": round(statistics.median(ordered), 1),
            "health_max_ms": round(ordered[-1], 1),
            "healthy_at_end": self.healthy_at_end,
            **({} if self.healthy_at_end else {"health_at_end": self.health_at_end}),
        }


async def run(url: str, function_key: str, inputs: int, *, seed: int = 18, concurrency: int = 16,
              failures: Path | None = None, progress: bool = False) -> Result:
    """Post `inputs` generated bodies to the host at `url`; count the answers; probe health meanwhile."""
    generator = Generator(seed)
    result = Result()
    queue: asyncio.Queue[tuple[int, str, bytes, dict[str, str]] | None] = asyncio.Queue(maxsize=concurrency * 4)
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def produce() -> None:
            for index in range(inputs):
                route, body, headers = generator.one(index)
                await queue.put((index, route, body, headers))
            for _ in range(concurrency):
                await queue.put(None)

        async def post() -> None:
            while (item := await queue.get()) is not None:
                index, route, body, headers = item
                sent = {"Content-Type": "application/json; charset=utf-8", "x-functions-key": function_key, **headers}
                side = "dataverse" if route == ROUTES["dataverse"] else "fno"
                try:
                    answer = await client.post(f"/api/{route}", content=body, headers=sent)
                except httpx.HTTPError as error:
                    result.transport_errors += 1
                    _save(result, failures, index, route, body, headers, None, f"{type(error).__name__}: {error}")
                    continue
                result.statuses[side][answer.status_code] += 1
                result.inputs += 1
                if answer.status_code >= 500:
                    _save(result, failures, index, route, body, headers, answer.status_code, answer.text[:2000])
                if progress and result.inputs % 5000 == 0:
                    print(f"{result.inputs} inputs, {result.server_errors} 5xx", file=sys.stderr, flush=True)

        async def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    await client.get("/api/health", timeout=120)
                    result.health_ms.append((time.perf_counter() - started) * 1000)
                except httpx.HTTPError:
                    result.health_ms.append(float("inf"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5)

        idle = []
        for _ in range(3):  # before the run: what a health check costs on a quiet host
            began = time.perf_counter()
            await client.get("/api/health", timeout=120)
            idle.append((time.perf_counter() - began) * 1000)
        result.health_idle_ms = statistics.median(idle)
        started = time.perf_counter()
        prober = asyncio.create_task(probe())
        await asyncio.gather(produce(), *(post() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
        done.set()
        await prober
        try:
            health = await client.get("/api/health", timeout=30)
            result.health_at_end = health.json()
            result.healthy_at_end = health.status_code == 200 and result.health_at_end.get("status") == "healthy"
        except (httpx.HTTPError, ValueError) as error:
            result.health_at_end = f"{type(error).__name__}: {error}"
    return result


def _save(result: Result, folder: Path | None, index: int, route: str, body: bytes, headers: dict[str, str],
          status: int | None, answer: str) -> None:
    entry = {"index": index, "route": route, "headers": headers, "status": status, "answer": answer}
    result.failures.append(entry)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:07d}.body").write_bytes(body)
        (folder / f"{index:07d}.json").write_text(json.dumps(entry, indent=2))


def start_stack(folder: Path) -> tuple[list[ManagedProcess], str]:
    """Azurite in memory, the emulator with its shipped topology, and the host serving the ingest functions."""
    from devstack.azurite import azurite_table, connection_string
    from devstack.servicebus.launch import emulator_process

    processes: list[ManagedProcess] = []
    table_port, bus_port, host_port = free_port(), free_port(), free_port()
    processes.append(azurite_table(table_port).start(ready_timeout=60))
    processes.append(emulator_process(port=bus_port, log_level="WARNING").start(ready_timeout=60))
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    values: dict[str, str] = sample["Values"]
    values.update({
        "AzureWebJobsStorage": connection_string(table_port), "TABLE_STORAGE_CONNECTION": connection_string(table_port),
        "SERVICEBUS_CONNECTION": f"Endpoint=sb://127.0.0.1:{bus_port};SharedAccessKeyName=RootManageSharedAccessKey;"
                                 "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        "DATAVERSE_URL": "http://127.0.0.1:9", "FNO_URL": "http://127.0.0.1:9", "DEPLOY_ON_START": "false",
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY, "DEVHOST_MASTER_KEY": MASTER_KEY, "LOG_LEVEL": "WARNING",
    })
    settings = folder / "local.settings.json"
    settings.write_text(json.dumps(sample, indent=2))
    processes.append(ManagedProcess("fuzz-host", python_module(
        "devstack.host", "--port", str(host_port), "--app", INGEST_APP, "--settings", str(settings)),
        port=host_port, log_dir=folder).start(ready_timeout=120))
    return processes, f"http://127.0.0.1:{host_port}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000, help="bodies posted, half to each route")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--concurrency", type=int, default=16, help="callers posting at once")
    parser.add_argument("--failures", type=Path, default=Path(".devstack/fuzz-failures"),
                        help="folder for the inputs answered 5xx or not answered")
    parser.add_argument("--host-log", type=Path, help="copy the Functions host's log here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        processes, url = start_stack(Path(tmp))
        try:
            result = asyncio.run(run(url, FUNCTION_KEY, args.inputs, seed=args.seed, concurrency=args.concurrency,
                                     failures=args.failures, progress=True))
            host = processes[-1]
            alive = host.running
        finally:
            if args.host_log:
                args.host_log.write_text(processes[-1].log_path.read_text(errors="replace"))
            for process in reversed(processes):
                process.stop()
    out = {"benchmark": "fuzz_ingest", "seed": args.seed, "concurrency": args.concurrency, **result.figures(),
           "host_alive_at_end": alive, "failures_folder": str(args.failures) if result.failures else None}
    print(json.dumps(out, indent=2))
    sys.stdout.flush()
    if result.server_errors or result.transport_errors or not result.healthy_at_end or not alive:
        sys.exit(1)


if __name__ == "__main__":
    main()
