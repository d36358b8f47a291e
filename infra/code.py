"""What the code and the local configuration say, read without importing them (a broken copy must be readable):
the settings core/settings.py reads, the Service Bus triggers and HTTP routes of functions/*.py, the local queue
topology, infra/README.md's table of settings left at their defaults; and the duration formats they use.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Field:
    name: str  # the environment variable, upper case
    default: Any  # the Python default; REQUIRED when there is none
    secret: bool
    bounds: dict[str, Any]
    choices: tuple[Any, ...] = ()  # the values of a Literal[...] annotation


REQUIRED = object()


def engine_settings(root: Path) -> dict[str, Field]:
    """The fields of core/settings.py's Settings, read from its source."""
    tree = ast.parse((root / "core/settings.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    fields = {}
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        if name.startswith("_") or name == "model_config":
            continue
        default: Any = REQUIRED
        bounds: dict[str, Any] = {}
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Field":
            if value.args:
                default = _literal(value.args[0])
            for kw in value.keywords:
                if kw.arg == "default":
                    default = _literal(kw.value)
                elif kw.arg in {"ge", "le", "gt", "lt"}:
                    bounds[kw.arg] = _literal(kw.value)
        elif value is not None:
            default = _literal(value)
        choices: tuple[Any, ...] = ()
        annotation = node.annotation
        if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Literal":
            inner = annotation.slice
            choices = tuple(_literal(e) for e in (inner.elts if isinstance(inner, ast.Tuple) else [inner]))
        secret = "SecretStr" in ast.unparse(annotation)
        fields[name.upper()] = Field(name.upper(), default, secret, bounds, choices)
    return fields


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


@dataclass
class Trigger:
    file: str
    function: str
    queue_setting: str
    connection: str
    sessions: bool


def service_bus_triggers(root: Path) -> list[Trigger]:
    found = []
    for path in sorted((root / "functions").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "service_bus_queue_trigger":
                    kw = {k.arg: _literal(k.value) for k in deco.keywords}
                    found.append(
                        Trigger(
                            path.name,
                            node.name,
                            str(kw.get("queue_name", "")).strip("%"),
                            str(kw.get("connection", "")),
                            kw.get("is_sessions_enabled") is True,
                        )
                    )
    return found


def http_routes(root: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted((root / "functions").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "route":
                for kw in node.keywords:
                    if kw.arg == "route" and isinstance(kw.value, ast.Constant):
                        found.append((path.name, str(kw.value.value)))
    return found


def optional_settings(root: Path) -> dict[str, str]:
    """infra/README.md's table of settings Bicep leaves at their defaults: | `NAME` | default | why |."""
    text = (root / "infra/README.md").read_text()
    section = text.split("## Settings left at their defaults", 1)[-1] if "## Settings left" in text else ""
    section = section.split("\n## ", 1)[0]
    return {
        m.group(1): m.group(2).strip().strip("`")
        for m in re.finditer(r"^\|\s*`([A-Z0-9_]+)`\s*\|([^|]*)\|", section, re.M)
    }


def topology_queues(root: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((root / "devstack/servicebus/topology.json").read_text())
    return {q["Name"]: q.get("Properties", {}) for ns in doc["UserConfig"]["Namespaces"] for q in ns["Queues"]}


def duration_seconds(text: str) -> float:
    """ISO 8601 durations as Service Bus takes them (P14D, PT1M, PT10M, PT20S)."""
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text)
    if not m or text in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    d, h, mi, s = (float(g or 0) for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def timespan_seconds(text: str) -> float:
    """.NET TimeSpan text of host.json ([d.]hh:mm:ss[.fffffff])."""
    days, _, rest = text.rpartition(".") if text.count(":") == 2 and text.split(":")[0].count(".") else ("", "", text)
    h, m, s = rest.split(":")
    return float(days or 0) * 86400 + int(h) * 3600 + int(m) * 60 + float(s)
