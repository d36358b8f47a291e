"""The deployment as data: infra/*.bicep read with a real Bicep parser (pycep-parser), offline.

The Bicep CLI cannot be installed from the registries this project builds with (the npm `bicep-node` wrapper
downloads the CLI from GitHub at run time), so `bicep build` is not available; pycep-parser's grammar checks the
syntax and gives every declaration as JSON, which is enough to read what the templates create and set.
Expressions stay expressions: `render` writes them back as Bicep-like text for people to read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycep import BicepParser

MAIN = Path("infra/main.bicep")
# The function app's own settings objects (function-app.bicep), merged over main.bicep's `appSettings`.
APP_MODULE_SETTINGS = ("hostSettings", "premiumSettings")


@functools.cache
def _parser() -> BicepParser:
    return BicepParser()


def parse(path: Path) -> dict[str, Any]:
    """One Bicep file as pycep's JSON; ValueError naming the file when it is not valid Bicep."""
    try:
        return dict(_parser().parse(text=path.read_text()))
    except Exception as error:  # lark's errors carry the line and column
        raise ValueError(f"{path}: not valid Bicep: {str(error).splitlines()[0] if str(error) else error}") from None


def key(name: str) -> str:
    """An object key as written: `'a-b'` keys keep their quotes in pycep's JSON."""
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == "'" else name


@dataclass
class Resource:
    module: str  # file, relative to infra/
    symbol: str
    type: str
    api_version: str
    body: dict[str, Any]
    condition: Any = None
    loop: str | None = None  # the array a `for` loop runs over

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.body.get("properties") or {})


@dataclass
class Module:
    path: Path
    doc: dict[str, Any]
    name: str = ""

    def variables(self) -> dict[str, Any]:
        return {name: spec.get("value") for name, spec in (self.doc.get("variables") or {}).items()}

    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc.get("parameters") or {})

    def secure_parameters(self) -> set[str]:
        return {
            name
            for name, spec in self.parameters().items()
            if any(d.get("type") == "secure" for d in spec.get("decorators") or [])
        }

    def resources(self) -> list[Resource]:
        found = []
        for symbol, spec in (self.doc.get("resources") or {}).items():
            config = spec.get("config") or {}
            condition, loop = None, None
            if "loop_type" in config:
                loop = ((config.get("loop_type") or {}).get("detail") or {}).get("array_name")
                condition, config = config.get("condition"), config.get("config") or {}
            elif "condition" in config and "config" in config:
                condition, config = config.get("condition"), config.get("config") or {}
            found.append(
                Resource(self.name, symbol, spec.get("type", ""), spec.get("api_version", ""), config, condition, loop)
            )
        return found

    def modules(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc.get("modules") or {})


def module_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The params a `module` declaration passes, conditional (`= if (...) {`) or not."""
    config = spec.get("config") or {}
    if "condition" in config and "config" in config:
        config = config.get("config") or {}
    return dict(config.get("params") or {})


def module_condition(spec: dict[str, Any]) -> Any:
    """The condition of a `module ... = if (condition)` declaration; None when it always deploys."""
    config = spec.get("config") or {}
    return config.get("condition") if "config" in config else None


@dataclass
class Deployment:
    """main.bicep and the local modules it uses, from a repository root (a temp copy in the tests)."""

    root: Path
    modules: dict[str, Module] = field(default_factory=dict)  # by path relative to infra/

    @classmethod
    def load(cls, root: Path) -> Deployment:
        deployment = cls(root)
        pending = [MAIN]
        while pending:
            relative = pending.pop()
            name = relative.relative_to("infra").as_posix()
            if name in deployment.modules:
                continue
            module = Module(root / relative, parse(root / relative), name)
            deployment.modules[name] = module
            for spec in module.modules().values():
                if spec.get("type") == "local":
                    pending.append(relative.parent / spec["detail"]["path"])
        return deployment

    @property
    def main(self) -> Module:
        return self.modules["main.bicep"]

    def module(self, file_name: str) -> Module:
        return self.modules[f"app/{file_name}"]

    def resources(self) -> list[Resource]:
        return [resource for module in self.modules.values() for resource in module.resources()]

    def app_settings(self) -> dict[str, Any]:
        """Every app setting the Function App gets: main.bicep's `appSettings` and the app module's own
        (APP_URL from the host name; the Premium plan's runtime settings), name -> expression."""
        settings = {key(name): value for name, value in (self.main.variables().get("appSettings") or {}).items()}
        app = self.module("function-app.bicep").variables()
        for name in APP_MODULE_SETTINGS:
            settings.update({key(k): v for k, v in (app.get(name) or {}).items()})
        return settings

    def queues(self) -> list[dict[str, Any]]:
        return list(self.module("servicebus.bicep").variables().get("queues") or [])

    def role_assignments(self) -> list[tuple[Resource, str]]:
        """(assignment, role definition GUID): the GUID read through the variable the template names it by."""
        found = []
        for module in self.modules.values():
            variables = module.variables()
            for resource in module.resources():
                if resource.type != "Microsoft.Authorization/roleAssignments":
                    continue
                role = resource.properties.get("roleDefinitionId")
                guid = ""
                if isinstance(role, dict) and "function" in role:
                    args = list((role["function"].get("parameters") or {}).values())
                    last = next((a for a in reversed(args) if a is not None), "")
                    guid = str(variables.get(last, last))
                found.append((resource, guid))
        return found


def leaves(value: Any) -> list[Any]:
    """The literals and names an expression is made of (strings, numbers, booleans), depth first."""
    if isinstance(value, dict):
        out: list[Any] = []
        for item in value.values():
            out.extend(leaves(item))
        return out
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


def functions_called(value: Any) -> set[str]:
    """Names of the functions an expression calls (pycep's names: list_keys, union, string, ...)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "function" in value and isinstance(value["function"], dict):
            fn = value["function"]
            found.add(str(fn.get("type", "")).lower())
            if fn.get("type") == "list_func":  # listKeys(id, version), listConnectionStrings(...)
                found.add(str((fn.get("parameters") or {}).get("func_name", "")).lower())
        operator = value.get("operator")
        if isinstance(operator, dict) and operator.get("type") == "function_accessor":  # storage.listKeys()
            found.add(str((operator.get("operands") or {}).get("func_name", "")).lower())
        for item in value.values():
            found |= functions_called(item)
    elif isinstance(value, list):
        for item in value:
            found |= functions_called(item)
    return found


def render(value: Any) -> str:
    """An expression as Bicep-like text (pycep's JSON does not tell a string from a name: both print bare)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if "operator" in value:
        op = value["operator"]
        operands = op.get("operands") or {}
        kind = op.get("type", "")
        if kind == "conditional":
            return (
                f"{render(operands.get('condition'))} ? {render(operands.get('true_value'))} : "
                f"{render(operands.get('false_value'))}"
            )
        if kind == "property_accessor":
            return f"{render(operands.get('operand_1'))}.{render(operands.get('operand_2'))}"
        symbols = {"equals": "==", "not_equals": "!=", "and": "&&", "or": "||", "not": "!"}
        if kind in symbols and len(operands) == 1:
            return f"{symbols[kind]}{render(next(iter(operands.values())))}"
        return f" {symbols.get(kind, kind)} ".join(render(v) for v in operands.values())
    if "function" in value:
        fn = value["function"]
        args = [render(v) for v in (fn.get("parameters") or {}).values() if v is not None]
        return f"{fn.get('type')}({', '.join(args)})"
    return "{" + ", ".join(f"{key(k)}: {render(v)}" for k, v in value.items()) + "}"
