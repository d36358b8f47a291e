"""Offline checks that the code and the infrastructure agree. Each returns a list of problems (empty: agreed).

They read a repository root, so the tests run them on the real tree and on broken temp copies of it:
- `parses`: every Bicep file is valid Bicep; every module main.bicep uses exists and gets its required params.
- `settings`: every setting core/settings.py reads is set in Bicep (or listed in infra/README.md as left at its
  default); every app setting is read by the engine or is a named platform setting; the Bicep defaults are the
  engine's; local.settings.sample.json and Bicep use the same names.
- `queues`: the queues the code and host.json use exist in Bicep with the properties the code relies on
  (compared with devstack/servicebus/topology.json, where every local run gets them).
- `secrets`: no key or password in an app setting or output (Key Vault references only), local auth off.
- `roles`: every role the code needs is assigned to the app's identity.
- `routes`: no HTTP route under a prefix Azure reserves; every URL main.bicep outputs is a route.
- `hosting`: the Python version and extension bundle the plans take; azure.yaml matches the templates.
- `network`: private networking (off by default) is refused with Flex Consumption and Service Bus Standard, every
  private endpoint has its DNS zone (linked to the network) and zone group, every resource behind one turns public
  network access off with the option, and the app's outbound traffic goes into the network.
The code is read by infra/code.py (never imported: a broken copy must be readable), the Bicep by infra/model.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra.code import (
    REQUIRED,
    Field,
    duration_seconds,
    engine_settings,
    http_routes,
    optional_settings,
    service_bus_triggers,
    timespan_seconds,
    topology_queues,
)
from infra.model import (
    Deployment,
    Module,
    Resource,
    functions_called,
    key,
    leaves,
    module_condition,
    module_params,
    parse,
    render,
)

# App settings that are not the engine's: the Functions host's and the platform's, with why they are set.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName": "the host's storage (blob leases, timers), reached with the identity",
    "AzureWebJobsStorage__credential": "the host's storage: managed identity",
    "AzureWebJobsStorage__clientId": "the host's storage: which user-assigned identity",
    "AZURE_CLIENT_ID": "DefaultAzureCredential's user-assigned identity (Azure Monitor exporter)",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where telemetry goes (read by the worker and core/ops/telemetry.py)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra auth for Application Insights (local auth is off)",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "the Python worker sets up the Azure Monitor distro",
    "PYTHON_ENABLE_OPENTELEMETRY": "the Python worker passes OpenTelemetry context (OTLP export instead)",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "OTLP export (core/ops/telemetry.py and the host) when otlpEndpoint is set",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "the distro's httpx spans would double the engine's",
    "OTEL_LOGS_EXPORTER": "the host forwards logs already",
    "FUNCTIONS_EXTENSION_VERSION": "Elastic Premium only (Flex Consumption forbids it)",
    "FUNCTIONS_WORKER_RUNTIME": "Elastic Premium only (Flex Consumption forbids it)",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "Elastic Premium only: build the package remotely (pip install)",
    "ENABLE_ORYX_BUILD": "Elastic Premium only: the Linux remote build",
}
# local.settings.sample.json names Bicep does not set, with why.
LOCAL_ONLY_SETTINGS = {
    "TABLE_STORAGE_CONNECTION__accountName": "an alternative to __tableServiceUri; Bicep gives the URI",
    "AzureWebJobsStorage": "a connection string with Azurite's key; Azure uses AzureWebJobsStorage__accountName",
    "AzureWebJobsFeatureFlags": "worker indexing is the default in Azure",
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption names the runtime in functionAppConfig",
    "TABLE_STORAGE_CONNECTION": "Azurite's connection string; Azure uses TABLE_STORAGE_CONNECTION__tableServiceUri",
    "SERVICEBUS_CONNECTION": "the emulator's; Azure uses SERVICEBUS_CONNECTION__fullyQualifiedNamespace",
    "DEVHOST_FUNCTION_KEY": "the local host's keys; Azure keeps its own",
    "DEVHOST_MASTER_KEY": "the local host's keys; Azure keeps its own",
}
# A connection string is satisfied in Azure by its identity-based setting.
IDENTITY_SETTING = {
    "SERVICEBUS_CONNECTION": "SERVICEBUS_CONNECTION__fullyQualifiedNamespace",
    "TABLE_STORAGE_CONNECTION": "TABLE_STORAGE_CONNECTION__tableServiceUri",
}
KEY_MARKERS = ("accountkey=", "sharedaccesskey=", "sharedaccesssignature=", "password=", "sig=")
KEY_FUNCTIONS = {
    "list_keys",
    "listkeys",
    "list_connection_strings",
    "listconnectionstrings",
    "list_account_sas",
    "list_service_sas",
}
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
RESERVED_ROUTE_PREFIXES = ("admin", "runtime")

ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",  # who runs azd: reads and rotates secrets
}
# Settings whose Azure default differs from the engine's on purpose.
AZURE_DEFAULTS = {
    "AUTH_MODE": "identity: in Azure the managed identity is the D365 application user; msal suits anywhere else",
}


# ---- the checks ---------------------------------------------------------------------------------------------


def parses(root: Path) -> list[str]:
    problems = []
    for path in sorted((root / "infra").rglob("*.bicep")):
        try:
            parse(path)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        return problems
    deployment = Deployment.load(root)
    for module in deployment.modules.values():
        for symbol, spec in module.modules().items():
            target = deployment.modules.get((Path(module.name).parent / spec["detail"]["path"]).as_posix())
            if target is None:
                problems.append(f"{module.name}: module {symbol}: {spec['detail']['path']} does not exist")
                continue
            given = {key(k) for k in module_params(spec)}
            declared = target.parameters()
            for name in sorted(given - set(declared)):
                problems.append(f"{module.name}: module {symbol} passes {name}, which {target.name} does not declare")
            for name, param in declared.items():
                if param.get("default") is None and name not in given:  # pycep: default None = none declared
                    problems.append(f"{module.name}: module {symbol} does not pass {name}, required by {target.name}")
    return problems


def settings(root: Path) -> list[str]:
    deployment = Deployment.load(root)
    app = deployment.app_settings()
    app_upper = {name.upper(): name for name in app}
    fields = engine_settings(root)
    optional = optional_settings(root)
    params = {name: spec.get("default") for name, spec in deployment.main.parameters().items()}
    problems = []
    for name, spec in fields.items():
        if "__" in name:  # the identity parts of a connection: checked through the connection below
            continue
        wanted = IDENTITY_SETTING.get(name, name)
        if wanted.upper() in app_upper:
            value = app[app_upper[wanted.upper()]]
            if name not in AZURE_DEFAULTS:
                problems += _same_default(name, spec, value, params)
            problems += _same_choices(name, spec, value, deployment.main.parameters())
        elif name in optional:
            if spec.default is REQUIRED:
                problems.append(f"{name}: README lists it as optional but core/settings.py requires it")
            elif _text(spec.default) != optional[name]:
                problems.append(f"{name}: README gives default {optional[name]!r}, core/settings.py {spec.default!r}")
        else:
            problems.append(
                f"{name}: read by core/settings.py but not set in infra/main.bicep's appSettings (nor "
                "listed in infra/README.md as left at its default)"
            )
    for name in app:
        if name.upper() not in fields and name not in PLATFORM_SETTINGS:
            problems.append(f"{name}: set in Bicep but read neither by core/settings.py nor by the platform")
    sample = json.loads((root / "local.settings.sample.json").read_text())["Values"]
    sample_upper = {n.upper() for n in sample}
    for name in sample:
        if name.upper() not in app_upper and name not in LOCAL_ONLY_SETTINGS and name not in optional:
            problems.append(f"{name}: in local.settings.sample.json but not in Bicep (nor a local-only setting)")
    for name in app:
        if name.upper() in fields and name.upper() not in sample_upper:
            problems.append(f"{name}: set in Bicep but missing from local.settings.sample.json")
    return problems


def _text(value: Any) -> str:
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _same_default(name: str, spec: Field, value: Any, params: dict[str, Any]) -> list[str]:
    """When the Bicep value is a parameter (maybe through string()), its default must be the engine's."""
    param = value
    if isinstance(value, dict) and "function" in value and value["function"].get("type") == "string":
        param = next(iter((value["function"].get("parameters") or {}).values()), None)
    if not isinstance(param, str) or param not in params or spec.default is REQUIRED:
        return []
    bicep_default = params[param]
    if bicep_default is None or isinstance(bicep_default, dict):
        return []
    if _text(bicep_default) != _text(spec.default) and not (spec.default is None and bicep_default == ""):
        try:
            if float(bicep_default) == float(spec.default):
                return []
        except (TypeError, ValueError):
            pass
        return [f"{name}: Bicep parameter {param} defaults to {bicep_default!r}, core/settings.py to {spec.default!r}"]
    return []


def _same_choices(name: str, spec: Field, value: Any, params: dict[str, dict[str, Any]]) -> list[str]:
    """A parameter's @allowed values must all be values the engine accepts (its Literal[...])."""
    if not spec.choices or not isinstance(value, str) or value not in params:
        return []
    allowed = next(
        (d.get("argument") for d in params[value].get("decorators") or [] if d.get("type") == "allowed"), None
    )
    extra = [v for v in allowed or [] if v not in spec.choices]
    return [f"{name}: Bicep parameter {value} allows {extra}, which core/settings.py refuses"] if extra else []


QUEUE_PROPERTIES = {  # Bicep property: topology property
    "requiresSession": "RequiresSession",
    "requiresDuplicateDetection": "RequiresDuplicateDetection",
    "lockDuration": "LockDuration",
    "maxDeliveryCount": "MaxDeliveryCount",
    "deadLetteringOnMessageExpiration": "DeadLetteringOnMessageExpiration",
}


def queues(root: Path) -> list[str]:
    deployment = Deployment.load(root)
    bicep = {q.get("name"): q for q in deployment.queues()}
    local = topology_queues(root)
    fields = engine_settings(root)
    app = deployment.app_settings()
    problems = []
    for name in sorted(set(local) - set(bicep)):
        problems.append(f"queue {name}: in devstack/servicebus/topology.json but not in infra/app/servicebus.bicep")
    for name in sorted(set(bicep) - set(local)):
        problems.append(f"queue {name}: in infra/app/servicebus.bicep but not in devstack/servicebus/topology.json")
    for setting in ("CHANGES_QUEUE", "FNO_EVENTS_QUEUE", "SYNC_PAGES_QUEUE"):
        default = fields[setting].default if setting in fields else None
        value = app.get(setting)
        if default not in bicep:
            problems.append(f"{setting}: core/settings.py's default queue {default!r} is not created by Bicep")
        if value != default:
            problems.append(f"{setting}: Bicep sets {value!r}, core/settings.py's default is {default!r}")
    for name in sorted(set(bicep) & set(local)):
        ours, theirs = bicep[name], local[name]
        for prop, local_prop in QUEUE_PROPERTIES.items():
            if ours.get(prop) != theirs.get(local_prop):
                problems.append(
                    f"queue {name}: {prop} is {ours.get(prop)!r} in Bicep, {theirs.get(local_prop)!r} in "
                    "the local topology"
                )
        if ours.get("requiresDuplicateDetection") and ours.get("duplicateDetectionHistoryTimeWindow") != theirs.get(
            "DuplicateDetectionHistoryTimeWindow"
        ):
            window = ours.get("duplicateDetectionHistoryTimeWindow")
            problems.append(
                f"queue {name}: duplicate detection window {window!r} in Bicep, "
                f"{theirs.get('DuplicateDetectionHistoryTimeWindow')!r} locally"
            )
        try:
            if duration_seconds(str(ours.get("defaultMessageTimeToLive"))) < duration_seconds(
                str(theirs.get("DefaultMessageTimeToLive"))
            ):
                problems.append(
                    f"queue {name}: TTL {ours.get('defaultMessageTimeToLive')} in Azure is shorter than "
                    f"the local {theirs.get('DefaultMessageTimeToLive')}"
                )
        except ValueError as error:
            problems.append(f"queue {name}: {error}")
    attempts = fields.get("APPLY_MAX_ATTEMPTS")
    most = attempts.bounds.get("le") if attempts else None
    changes = bicep.get(fields["CHANGES_QUEUE"].default if "CHANGES_QUEUE" in fields else "changes") or {}
    if most is not None and int(changes.get("maxDeliveryCount") or 0) <= int(most):
        problems.append(
            f"queue changes: maxDeliveryCount {changes.get('maxDeliveryCount')} must exceed "
            f"APPLY_MAX_ATTEMPTS's maximum {most} (the engine decides when a change fails, not the broker)"
        )
    for trigger in service_bus_triggers(root):
        where = f"{trigger.file}:{trigger.function}"
        queue = fields[trigger.queue_setting].default if trigger.queue_setting in fields else None
        if trigger.queue_setting not in app:
            problems.append(f"{where}: its queue setting %{trigger.queue_setting}% is not an app setting in Bicep")
        if queue not in bicep:
            problems.append(f"{where}: queue {queue!r} ({trigger.queue_setting}) is not created by Bicep")
        elif bool(bicep[queue].get("requiresSession")) != trigger.sessions:
            problems.append(
                f"{where}: is_sessions_enabled={trigger.sessions} but queue {queue} has requiresSession="
                f"{bicep[queue].get('requiresSession')}"
            )
        if f"{trigger.connection}__fullyQualifiedNamespace" not in app:
            problems.append(
                f"{where}: connection {trigger.connection} has no {trigger.connection}"
                "__fullyQualifiedNamespace app setting in Bicep"
            )
    host = json.loads((root / "host.json").read_text())
    service_bus = (host.get("extensions") or {}).get("serviceBus") or {}
    renewal = service_bus.get("maxAutoLockRenewalDuration")
    for name, queue_spec in bicep.items():
        lock = duration_seconds(str(queue_spec.get("lockDuration")))
        if renewal and timespan_seconds(renewal) < lock:
            problems.append(f"host.json maxAutoLockRenewalDuration {renewal} is shorter than queue {name}'s lock")
    worker_telemetry = {"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "PYTHON_ENABLE_OPENTELEMETRY"} & set(app)
    if worker_telemetry and host.get("telemetryMode") != "OpenTelemetry":
        problems.append(
            "host.json: telemetryMode must be OpenTelemetry when the app settings turn on the Python worker's "
            "telemetry (the worker's spans are dropped otherwise)"
        )
    return problems


def _resolve(value: Any, variables: dict[str, Any], depth: int = 0) -> Any:
    """`value` with the names of main.bicep's variables replaced by their values (a string naming one is one)."""
    if depth > 5:
        return value
    if isinstance(value, str) and value in variables:
        return _resolve(variables[value], variables, depth + 1)
    if isinstance(value, dict):
        return {k: _resolve(v, variables, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables, depth + 1) for v in value]
    return value


def _outcome_leaves(value: Any) -> list[Any]:
    """The leaves a setting's value can be made of: a condition's test is left out, its outcomes kept."""
    if isinstance(value, dict) and (value.get("operator") or {}).get("type") == "conditional":
        operands = value["operator"].get("operands") or {}
        return _outcome_leaves(operands.get("true_value")) + _outcome_leaves(operands.get("false_value"))
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _outcome_leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _outcome_leaves(item)]
    return [value]


def _reference_or_empty(value: Any) -> bool:
    """A Key Vault reference, empty, or a condition whose every outcome is one of those."""
    if isinstance(value, str):
        return value == "" or value.startswith(KEY_VAULT_REFERENCE)
    if isinstance(value, dict) and (value.get("operator") or {}).get("type") == "conditional":
        operands = value["operator"].get("operands") or {}
        return _reference_or_empty(operands.get("true_value")) and _reference_or_empty(operands.get("false_value"))
    return False


def secrets(root: Path) -> list[str]:
    deployment = Deployment.load(root)
    variables = deployment.main.variables()
    app = {name: _resolve(value, variables) for name, value in deployment.app_settings().items()}
    fields = engine_settings(root)
    secure = set()
    for module in deployment.modules.values():
        secure |= module.secure_parameters()
    problems = []
    for name, value in app.items():
        for text in (str(leaf) for leaf in _outcome_leaves(value) if isinstance(leaf, str)):
            if any(marker in text.lower() for marker in KEY_MARKERS):
                problems.append(f"{name}: a key or password in a plain app setting ({text.split('=')[0]}=...)")
            if text in secure:
                problems.append(
                    f"{name}: takes the secure parameter {text} directly; store it in Key Vault and reference it"
                )
        if functions_called(value) & KEY_FUNCTIONS:
            problems.append(
                f"{name}: built with {sorted(functions_called(value) & KEY_FUNCTIONS)[0]}(): a key in a "
                "plain app setting"
            )
        field = fields.get(name.upper())
        if (
            field is not None
            and field.secret
            and name.upper() not in IDENTITY_SETTING
            and not _reference_or_empty(value)
        ):
            problems.append(f"{name}: a secret setting must be a Key Vault reference (or empty)")
    for module in deployment.modules.values():  # deployment outputs are readable by anyone who can read the group
        for output, spec in (module.doc.get("outputs") or {}).items():
            value = spec.get("value")
            texts = {str(leaf) for leaf in leaves(value)} | set(re.findall(r"\$\{([A-Za-z_]\w*)", str(value)))
            if texts & module.secure_parameters() or functions_called(value) & KEY_FUNCTIONS:
                problems.append(f"{module.name}: output {output} gives away a secret")
    for name in IDENTITY_SETTING:
        if name in app:
            problems.append(f"{name}: a connection string in Azure; use {IDENTITY_SETTING[name]} and the identity")
    local_auth = {
        "Microsoft.ServiceBus/namespaces": ("disableLocalAuth", True),
        "Microsoft.Storage/storageAccounts": ("allowSharedKeyAccess", False),
        "Microsoft.Insights/components": ("DisableLocalAuth", True),
    }
    for resource in deployment.resources():
        if resource.type in local_auth:
            prop, wanted = local_auth[resource.type]
            if resource.properties.get(prop) is not wanted:
                problems.append(
                    f"{resource.module}: {resource.symbol} must set {prop}: {str(wanted).lower()} (keys "
                    "would work next to the identity)"
                )
    parameters = json.loads((root / "infra/main.parameters.json").read_text())["parameters"]
    for name in secure & set(parameters):
        value = str(parameters[name].get("value", ""))
        if not re.fullmatch(r"\$\{[A-Z0-9_]+=?\}|\$\(secretOrRandomPassword [^)]*\)", value):
            problems.append(
                f"main.parameters.json: {name} is secure; give it from the environment (${{NAME}}) or "
                "secretOrRandomPassword, never as a value"
            )
    return problems


def roles(root: Path) -> list[str]:
    """The roles the code needs, from what it uses, against the role assignments in Bicep."""
    deployment = Deployment.load(root)
    app = deployment.app_settings()
    core = "\n".join(p.read_text() for p in (root / "core").rglob("*.py"))
    assigned = {guid: resource for resource, guid in deployment.role_assignments()}
    needs: list[tuple[str, set[str]]] = []  # (why, any of these role sets)
    if "AzureWebJobsStorage__accountName" in app:
        needs.append(("the Functions host's storage (AzureWebJobsStorage__accountName)", {"Storage Blob Data Owner"}))
    if "TableServiceClient" in core:
        needs.append(("the engine's tables (core/store/tables.py)", {"Storage Table Data Contributor"}))
    if "ServiceBusAdministrationClient" in core:
        needs.append(("the queue depth (core/store/queuedepth.py: Manage rights)", {"Azure Service Bus Data Owner"}))
    if "get_queue_sender" in core or "ServiceBusClient" in core:
        needs.append(
            (
                "sending and receiving (core/store/queues.py, the triggers)",
                {"Azure Service Bus Data Owner", "Azure Service Bus Data Sender+Azure Service Bus Data Receiver"},
            )
        )
    if any(KEY_VAULT_REFERENCE in str(leaf) for v in app.values() for leaf in leaves(v)):
        needs.append(("the Key Vault references of the app settings", {"Key Vault Secrets User"}))
    if "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in app:
        needs.append(
            ("telemetry with Entra auth (Application Insights local auth is off)", {"Monitoring Metrics Publisher"})
        )
    have = {ROLES.get(guid, guid) for guid in assigned}
    problems = []
    for why, options in needs:
        if not any(all(part in have for part in option.split("+")) for option in options):
            problems.append(f"no role assignment for {why}: needs {' or '.join(sorted(options))}")
    for resource, guid in deployment.role_assignments():
        if guid not in ROLES:
            problems.append(f"{resource.module}: {resource.symbol} assigns an unknown role {guid!r}")
    return problems


def routes(root: Path) -> list[str]:
    """No route under a prefix Azure reserves; every URL main.bicep outputs (the webhook and events endpoints the
    hook prints) is a route of the app."""
    found = http_routes(root)
    problems = [
        f"{file}: route {route!r} starts with {route.split('/')[0]!r}, which Azure reserves (it will not load)"
        for file, route in found
        if route.lower().startswith(RESERVED_ROUTE_PREFIXES)
    ]
    known = {route for _, route in found}
    for name, spec in (Deployment.load(root).main.doc.get("outputs") or {}).items():
        value = str(spec.get("value", ""))
        if "/api/" in value:
            path = value.split("/api/", 1)[1]
            if path not in known and not any(route.startswith(path + "/") for route in known):
                problems.append(f"main.bicep output {name}: /api/{path} is no route of the app")
    return problems


FLEX_PYTHON = ("3.10", "3.11", "3.12")  # what Flex Consumption runs (Microsoft's Flex Consumption page)


def hosting(root: Path) -> list[str]:
    """The runtime the templates ask for is one the code runs on and the plan offers; host.json's extension
    bundle is one Flex Consumption takes ([4.*, 5.0.0) or later for non-C# apps)."""
    app = Deployment.load(root).module("function-app.bicep")
    site = next(r for r in app.resources() if r.type == "Microsoft.Web/sites")
    problems = []
    flex = site.properties.get("functionAppConfig")
    flex_config = ((flex or {}).get("operator") or {}).get("operands", {}).get("true_value") or flex or {}
    version = str((flex_config.get("runtime") or {}).get("version", ""))
    linux = site.properties.get("siteConfig", {}).get("linuxFxVersion")
    linux_config = (
        ((linux or {}).get("operator") or {}).get("operands", {}).get("false_value")
        if isinstance(linux, dict)
        else linux
    )
    if version not in FLEX_PYTHON:
        problems.append(f"function-app.bicep: Flex Consumption runs Python {', '.join(FLEX_PYTHON)}, not {version!r}")
    if linux_config != f"Python|{version}":
        problems.append(f"function-app.bicep: Elastic Premium runs {linux_config!r}, Flex Consumption Python {version}")
    floor = (
        re.search(r"requires-python\s*=\s*\">=(\d+\.\d+)", (root / "pyproject.toml").read_text())
        if (root / "pyproject.toml").is_file()
        else None
    )
    if floor and tuple(map(int, version.split(".") if version else [0])) < tuple(map(int, floor.group(1).split("."))):
        problems.append(f"function-app.bicep: Python {version} is below the project's requires-python {floor.group(1)}")
    problems += _azure_yaml(root, Deployment.load(root))
    bundle = (json.loads((root / "host.json").read_text()).get("extensionBundle") or {}).get("version", "")
    first = re.match(r"\[(\d+)", bundle)
    if not first or int(first.group(1)) < 4:
        problems.append(f"host.json: extension bundle {bundle!r}; Flex Consumption needs [4.*, 5.0.0) or later")
    return problems


def _azure_yaml(root: Path, deployment: Deployment) -> list[str]:
    """azure.yaml points at main.bicep, its hook exists, and its service is the app Bicep tags for azd."""
    import yaml

    path = root / "azure.yaml"
    if not path.is_file():
        return ["azure.yaml is missing: azd has no project"]
    project = yaml.safe_load(path.read_text()) or {}
    problems = []
    infra = project.get("infra") or {}
    if not (root / infra.get("path", "infra") / f"{infra.get('module', 'main')}.bicep").is_file():
        problems.append("azure.yaml: infra path/module is not infra/main.bicep")
    tag = str(deployment.module("function-app.bicep").variables().get("serviceTag", {}).get("'azd-service-name'"))
    services = project.get("services") or {}
    if tag not in services:
        problems.append(f"azure.yaml: no service {tag!r}, the azd-service-name the Function App is tagged with")
    for name, service in services.items():
        if service.get("host") != "function" or service.get("language") != "python":
            problems.append(f"azure.yaml: service {name} must be host: function, language: python")
    for hook, spec in (project.get("hooks") or {}).items():
        for shell in (spec or {}).values():
            script = next((w for w in str(shell.get("run", "")).split() if w.endswith(".py")), None)
            if script and not (root / script).is_file():
                problems.append(f"azure.yaml: hook {hook} runs {script}, which does not exist")
    return problems


# A private endpoint's sub-resource (groupId): the resource type it reaches and the private DNS zone Microsoft names
# for it (Azure public cloud; Microsoft's "Azure Private Endpoint private DNS zone values").
PRIVATE_LINK = {
    "blob": ("Microsoft.Storage/storageAccounts", "privatelink.blob.core.windows.net"),
    "table": ("Microsoft.Storage/storageAccounts", "privatelink.table.core.windows.net"),
    "queue": ("Microsoft.Storage/storageAccounts", "privatelink.queue.core.windows.net"),
    "vault": ("Microsoft.KeyVault/vaults", "privatelink.vaultcore.azure.net"),
    "namespace": ("Microsoft.ServiceBus/namespaces", "privatelink.servicebus.windows.net"),
}
# The subnet delegation of Elastic Premium's outbound VNet integration (Flex Consumption's: Microsoft.App/environments).
INTEGRATION_DELEGATION = "Microsoft.Web/serverFarms"
NETWORK_OPTION = "privateNetworking"


def _root_name(expr: Any) -> str:
    """The symbol an expression starts from: `endpoint[i]` -> endpoint, `zones[i].id` -> zones,
    `storage.outputs.id` -> storage."""
    while isinstance(expr, dict) and "operator" in expr:
        expr = (expr["operator"].get("operands") or {}).get("operand_1")
    return str(expr or "")


def _parent_index(resource: Resource) -> str:
    return _root_name(resource.body.get("parent"))


def _allowed(module: Module, name: str) -> list[Any] | None:
    spec = module.parameters().get(name) or {}
    return next((d.get("argument") for d in spec.get("decorators") or [] if d.get("type") == "allowed"), None)


def _disabled_when_private(value: Any, option: str) -> bool:
    """`option ? 'Disabled' : 'Enabled'` (or always 'Disabled')."""
    if isinstance(value, str):
        return value.lower() == "disabled"
    operands = ((value or {}).get("operator") or {}).get("operands") or {}
    if ((value or {}).get("operator") or {}).get("type") != "conditional" or operands.get("condition") != option:
        return False
    return str(operands.get("true_value", "")).lower() == "disabled"


def network(root: Path) -> list[str]:
    """Private networking: refused where it cannot work, complete where it is on."""
    deployment = Deployment.load(root)
    main = deployment.main
    if NETWORK_OPTION not in main.parameters():
        return []  # no such option: nothing to agree with
    problems = []
    option_default = main.parameters()[NETWORK_OPTION].get("default")
    if option_default is not False:
        problems.append(f"main.bicep: {NETWORK_OPTION} must default to false (private networking is an option)")
    specs = {s["detail"]["path"]: (symbol, s) for symbol, s in main.modules().items() if s.get("type") == "local"}
    symbol, spec = specs.get("app/network.bicep", ("", {}))
    net = deployment.modules.get("app/network.bicep")
    if net is None or not spec:
        return [*problems, f"main.bicep: {NETWORK_OPTION} is a parameter but no module uses app/network.bicep"]
    if module_condition(spec) != NETWORK_OPTION:
        problems.append(f"main.bicep: module {symbol} must deploy only if ({NETWORK_OPTION})")
    passed = module_params(spec)
    # The refusal: ARM checks a module's @allowed values when the module deploys, i.e. with the option on.
    plans = _allowed(net, "planSku")
    if passed.get("planSku") != "planSku" or plans is None or "FC1" in plans:
        problems.append(
            "app/network.bicep: planSku must be main.bicep's and @allowed EP1-EP3 only (private networking is "
            "refused with Flex Consumption: its Key Vault references cannot go through a private endpoint)"
        )
    tiers = _allowed(net, "serviceBusSku")
    if passed.get("serviceBusSku") != "serviceBusSku" or tiers != ["Premium"]:
        problems.append(
            "app/network.bicep: serviceBusSku must be main.bicep's and @allowed Premium only (Service Bus has "
            "private endpoints on Premium only)"
        )
    resources = net.resources()
    by_symbol = {r.symbol: r for r in resources}
    endpoints_res = [r for r in resources if r.type == "Microsoft.Network/privateEndpoints"]
    groups = [r for r in resources if r.type == "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"]
    zones = [r for r in resources if r.type == "Microsoft.Network/privateDnsZones"]
    links = [r for r in resources if r.type == "Microsoft.Network/privateDnsZones/virtualNetworkLinks"]
    if not endpoints_res:
        problems.append("app/network.bicep: no private endpoint")
    for endpoint in endpoints_res:
        mine = [g for g in groups if _parent_index(g) == endpoint.symbol and g.loop == endpoint.loop]
        if not mine:
            problems.append(
                f"app/network.bicep: private endpoint {endpoint.symbol} has no DNS zone group (its address would "
                "not be in the private DNS zone: the app would resolve the public one, which is closed)"
            )
    for zone in zones:
        if not any(_parent_index(link) == zone.symbol and link.loop == zone.loop for link in links):
            problems.append(f"app/network.bicep: private DNS zone {zone.symbol} is linked to no virtual network")
    for group in groups:
        configs = (group.properties.get("privateDnsZoneConfigs") or [{}])[0]
        zone_ref = _root_name((configs.get("properties") or {}).get("privateDnsZoneId"))
        if zone_ref not in by_symbol or by_symbol[zone_ref].type != "Microsoft.Network/privateDnsZones":
            problems.append(f"app/network.bicep: DNS zone group {group.symbol} names no private DNS zone of the module")
    entries = list(net.variables().get("endpoints") or [])
    passed_ids = {key(k): v for k, v in passed.items()}
    reached: set[str] = set()
    for entry in entries:
        group_id = entry.get("groupId")
        if group_id not in PRIVATE_LINK:
            problems.append(f"app/network.bicep: endpoint {entry.get('name')}: unknown sub-resource {group_id!r}")
            continue
        wanted_type, wanted_zone = PRIVATE_LINK[group_id]
        if entry.get("zone") != wanted_zone:
            problems.append(
                f"app/network.bicep: endpoint {entry.get('name')} ({group_id}) uses zone {entry.get('zone')!r}; "
                f"Azure resolves {group_id} through {wanted_zone}"
            )
        reached.add(wanted_type)
        source = passed_ids.get(str(entry.get("target")))
        module_symbol = _root_name(source)
        target_spec = main.modules().get(module_symbol)
        if target_spec is None:
            problems.append(f"app/network.bicep: endpoint {entry.get('name')} reaches {render(source)}, no module's")
            continue
        target = deployment.modules.get(target_spec["detail"]["path"])
        if target is None or not any(r.type == wanted_type for r in target.resources()):
            problems.append(
                f"app/network.bicep: endpoint {entry.get('name')} reaches {module_symbol}, not a {wanted_type}"
            )
    for module in deployment.modules.values():
        if module is net:
            continue
        for resource in module.resources():
            if resource.type not in reached:
                continue
            spec_in_main = next(
                (s for s in main.modules().values() if s["detail"]["path"] == module.name),
                {},
            )
            given = module_params(spec_in_main).get(NETWORK_OPTION)
            access = resource.properties.get("publicNetworkAccess")
            if given != NETWORK_OPTION or not _disabled_when_private(access, NETWORK_OPTION):
                problems.append(
                    f"{module.name}: {resource.symbol} has a private endpoint but keeps public network access "
                    f"with {NETWORK_OPTION} on (set publicNetworkAccess: {NETWORK_OPTION} ? 'Disabled' : 'Enabled' "
                    f"and pass {NETWORK_OPTION} from main.bicep)"
                )
    vnet = next((r for r in resources if r.type == "Microsoft.Network/virtualNetworks"), None)
    delegations = [
        d.get("properties", {}).get("serviceName")
        for subnet in ((vnet.properties.get("subnets") if vnet else None) or [])
        for d in (subnet.get("properties") or {}).get("delegations") or []
    ]
    if INTEGRATION_DELEGATION not in delegations:
        problems.append(
            f"app/network.bicep: no subnet delegated to {INTEGRATION_DELEGATION} for the app's VNet integration"
        )
    app_spec = specs.get("app/function-app.bicep", ("", {}))[1]
    site = next(r for r in deployment.module("function-app.bicep").resources() if r.type == "Microsoft.Web/sites")
    if "virtualNetworkSubnetId" not in site.properties or "appSubnetId" not in module_params(app_spec):
        problems.append("app/function-app.bicep: the site sets no virtualNetworkSubnetId from main.bicep's network")
    elif f"{symbol}.outputs." not in render(module_params(app_spec).get("appSubnetId")):
        problems.append(f"main.bicep: the app's appSubnetId does not come from module {symbol}")
    site_config = site.properties.get("siteConfig") or {}
    if "vnetRouteAllEnabled" not in site_config:
        problems.append(
            "app/function-app.bicep: siteConfig sets no vnetRouteAllEnabled (Key Vault references and the private "
            "endpoints need the app's traffic routed into the network)"
        )
    if "functionsRuntimeScaleMonitoringEnabled" not in site_config:
        problems.append(
            "app/function-app.bicep: siteConfig sets no functionsRuntimeScaleMonitoringEnabled (Premium's virtual "
            "network trigger support: the Service Bus triggers would not scale out behind a private endpoint)"
        )
    return problems


ALL = {
    "parses": parses,
    "settings": settings,
    "queues": queues,
    "secrets": secrets,
    "roles": roles,
    "routes": routes,
    "hosting": hosting,
    "network": network,
}


def run(root: Path) -> dict[str, list[str]]:
    return {name: check(root) for name, check in ALL.items()}


def main() -> int:
    """`python -m infra.checks`: every check on this repository, its problems printed; exit 1 if any."""
    import sys

    root = Path(__file__).resolve().parents[1]
    failed = False
    for name, problems in run(root).items():
        sys.stdout.write(f"{name}: {'ok' if not problems else f'{len(problems)} problem(s)'}\n")
        for problem in problems:
            sys.stdout.write(f"  - {problem}\n")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
