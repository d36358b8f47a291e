"""Deployment of the maps' live-sync plumbing: Dataverse webhook steps and F&O data-event activations.

`deploy()` is idempotent: it reads what is registered, writes only what differs, and says per item
whether it was created, updated, left unchanged or failed. It never raises for a refusal of one
item (the report carries it), so a host can run it at every start.

Dataverse (reference §1.1-1.3): one webhook `serviceendpoint` (contract 8, WebhookKey) and, per table
that a map sends to F&O, async PostOperation steps for Create, Update and Delete with images (synchronous
ones when a map of the table is online, core.sync.online).
`authvalue` cannot be read back, so the endpoint's description carries a fingerprint of the key
(a truncated SHA-256, not the key) to notice a changed key. The steps are named
`dw-oss: <message> of <table>`; the engine's own writes skip them by that name (core.ops.steps),
and a client with OwnSteps as its write headers has them looked up again after each run.

F&O: real F&O has no public API for business-event endpoints and activations; there it is a one-time
setup in System administration > Business events (or a DMF import of the catalog configuration).
This module drives the local simulator's admin API (devstack/fno/README.md, Events), which mirrors it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import httpx

from core.maps import MapSet, TableMap
from core.ops.steps import OwnSteps

log = logging.getLogger("core.ops.deploy")

ENDPOINT_NAME = "dw-oss ingest"
FNO_ENDPOINT_NAME = "dw-oss-ingest"
DATAVERSE_ROUTE = "/api/dataverse/webhook"
FNO_ROUTE = "/api/fno/events"
MESSAGES = ("Create", "Update", "Delete")
FNO_OPERATIONS = ("Create", "Update", "Delete")
WEBHOOK, WEBHOOK_KEY, JSON_FORMAT = 8, 4, 2
POST_OPERATION, SYNCHRONOUS, ASYNCHRONOUS = 40, 0, 1
PRE_IMAGE, POST_IMAGE = 0, 1

ItemKind = Literal["dataverse_endpoint", "dataverse_step", "dataverse_image", "fno_endpoint", "fno_activation"]
ItemStatus = Literal["created", "updated", "unchanged", "deleted", "failed"]


@dataclass(frozen=True)
class DeployItem:
    kind: ItemKind
    name: str
    status: ItemStatus
    detail: str = ""


@dataclass
class DeployReport:
    items: list[DeployItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(item.status == "failed" for item in self.items)

    def add(self, kind: ItemKind, name: str, status: ItemStatus, detail: str = "") -> None:
        item = DeployItem(kind, name, status, detail)
        self.items.append(item)
        level = logging.WARNING if status == "failed" else logging.INFO
        log.log(level, "deploy %s %r: %s%s", kind, name, status, f" ({detail})" if detail else "")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.status] = out.get(item.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts(), "items": [asdict(item) for item in self.items]}


class DeployError(RuntimeError):
    """A registration did not happen; the subclass says whether trying again can help."""


class RegistrationRefused(DeployError):
    """Refused for good (wrong request, unknown event or table): terminal until the maps or setup change."""


class EndpointNotAnswering(DeployError):
    """Transient: F&O's activation test message did not reach the ingest endpoint (the host may still be
    starting), or F&O's admin API did not answer."""


class DataverseApi(Protocol):
    """The part of core.connectors.dataverse.DataverseClient that deployment uses."""

    async def query(self, entity_set: str, *, filter: str | None = None) -> list[dict[str, Any]]: ...
    async def create(self, entity_set: str, body: dict[str, Any]) -> str: ...
    async def update(self, entity_set: str, row_id: str, body: dict[str, Any]) -> None: ...
    async def delete(self, entity_set: str, row_id: str | None = None) -> bool: ...


# --------------------------------------------------------------------------------------- what to register


@dataclass(frozen=True)
class TableSteps:
    """The steps one Dataverse table needs: Update filtered on (and imaging) `attributes`; Delete
    imaging `key_attributes` so a delete can be matched by integration key."""

    table: str
    attributes: tuple[str, ...]
    key_attributes: tuple[str, ...]
    online: bool = False  # a map of the table is online: its steps run synchronously, inside the save


def lookup_column(navigation: str, columns: dict[str, str]) -> str:
    """The lookup column behind a navigation property (parentcustomerid_account -> parentcustomerid)."""
    return columns.get(navigation, navigation)


def key_columns(table_map: TableMap, navigation: dict[str, str]) -> set[str]:
    """Key columns, the company part as its lookup column (msdyn_company.cdm_companycode -> msdyn_company)."""
    return {lookup_column(k.split(".")[0], navigation) if "." in k else k for k in table_map.dataverse.key}


def dataverse_plan(maps: MapSet, navigation: dict[str, dict[str, str]] | None = None) -> list[TableSteps]:
    """One TableSteps per table of the enabled maps that send Dataverse -> F&O; tables shared by several
    maps get the union. `navigation` is table -> {navigation property: lookup column} (from metadata)."""
    navigation = navigation or {}
    attributes: dict[str, set[str]] = {}
    keys: dict[str, set[str]] = {}
    online: set[str] = set()
    for table_map in maps.values():
        if not table_map.enabled or not table_map.sends_to("fno"):
            continue
        table = table_map.dataverse.table
        if table_map.online:
            online.add(table)
        nav = navigation.get(table, {})
        wanted = attributes.setdefault(table, set())
        # What apply needs (the source filter's columns too: a row entering the filter is a change to
        # sync, and the image then holds all apply needs, no re-read), navigation properties as columns.
        wanted |= {lookup_column(name, nav) for name in table_map.dataverse_columns_to_send()}
        table_keys = key_columns(table_map, nav)
        if table_map.company is not None:
            table_keys.add(lookup_column(table_map.company.dataverse, nav))
        wanted |= table_keys
        keys.setdefault(table, set()).update(table_keys)
    return [TableSteps(t, tuple(sorted(attributes[t])), tuple(sorted(keys[t])), online=t in online)
            for t in sorted(attributes)]


def fno_plan(maps: MapSet) -> list[str]:
    """Data events `<EntitySet>.Create|Update|Delete` of the enabled maps that send F&O -> Dataverse."""
    sets = sorted({m.fno.entity_set for m in maps.values() if m.enabled and m.sends_to("dataverse")})
    return [f"{entity_set}.{operation}" for entity_set in sets for operation in FNO_OPERATIONS]


def key_fingerprint(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _endpoint_description(key: str) -> str:
    return f"Managed by dw-oss deployment; ingest key {key_fingerprint(key)}"


def _attribute_set(text: Any) -> set[str]:
    return {a.strip().lower() for a in str(text or "").split(",") if a.strip()}


# --------------------------------------------------------------------------------------------- Dataverse


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _DataverseDeployment:
    def __init__(self, client: DataverseApi, report: DeployReport) -> None:
        self.client = client
        self.report = report
        self._message_ids: dict[str, str] = {}

    async def navigation(self, tables: Iterable[str]) -> dict[str, dict[str, str]]:
        """Navigation property -> lookup column per table, from ManyToOneRelationships. Without metadata
        (a refusal, say) the naming convention holds: a single-target lookup's navigation property
        has the column's own name, which `lookup_column` falls back to."""
        out: dict[str, dict[str, str]] = {}
        for table in tables:
            try:
                rows = await self.client.query(f"EntityDefinitions(LogicalName='{table}')/ManyToOneRelationships")
            except Exception as error:  # metadata is a nicety here; never fail the deployment on it
                log.info("deploy: no relationship metadata for %s (%s); using lookup names as columns", table, error)
                continue
            out[table] = {str(r["ReferencingEntityNavigationPropertyName"]): str(r["ReferencingAttribute"])
                          for r in rows
                          if r.get("ReferencingEntityNavigationPropertyName") and r.get("ReferencingAttribute")}
        return out

    async def endpoint(self, url: str, key: str) -> str:
        wanted = {"url": url, "contract": WEBHOOK, "authtype": WEBHOOK_KEY, "messageformat": JSON_FORMAT,
                  "description": _endpoint_description(key)}
        found = await self.client.query("serviceendpoints", filter=f"name eq {_quote(ENDPOINT_NAME)}")
        if not found:
            endpoint_id = await self.client.create("serviceendpoints",
                                                   {"name": ENDPOINT_NAME, **wanted, "authvalue": key})
            self.report.add("dataverse_endpoint", ENDPOINT_NAME, "created", url)
            return endpoint_id
        row = found[0]
        endpoint_id = str(row["serviceendpointid"])
        differs = sorted(name for name, value in wanted.items() if row.get(name) != value)
        if differs:
            changed = ["ingest key" if name == "description" else name for name in differs]
            await self.client.update("serviceendpoints", endpoint_id, {**wanted, "authvalue": key})
            self.report.add("dataverse_endpoint", ENDPOINT_NAME, "updated", "changed: " + ", ".join(changed))
        else:
            self.report.add("dataverse_endpoint", ENDPOINT_NAME, "unchanged", url)
        return endpoint_id

    async def message_id(self, message: str) -> str:
        if message not in self._message_ids:
            rows = await self.client.query("sdkmessages", filter=f"name eq {_quote(message)}")
            if not rows:
                raise RegistrationRefused(f"no sdkmessage named {message}")
            self._message_ids[message] = str(rows[0]["sdkmessageid"])
        return self._message_ids[message]

    async def filter_id(self, message: str, table: str) -> str:
        message_id = await self.message_id(message)
        rows = await self.client.query(
            "sdkmessagefilters",
            filter=f"primaryobjecttypecode eq {_quote(table)} and _sdkmessageid_value eq {message_id}")
        if not rows:
            raise RegistrationRefused(f"{message} of {table} cannot have steps (no sdkmessagefilter)")
        return str(rows[0]["sdkmessagefilterid"])

    async def steps(self, endpoint_id: str, plan: TableSteps) -> None:
        for message in MESSAGES:
            name = f"dw-oss: {message} of {plan.table}"
            try:
                await self._step(endpoint_id, plan, message, name)
            except Exception as error:  # one refused step must not hide the others
                self.report.add("dataverse_step", name, "failed", f"{type(error).__name__}: {error}")

    async def _step(self, endpoint_id: str, plan: TableSteps, message: str, name: str) -> None:
        filtering = ",".join(plan.attributes) if message == "Update" else None
        # asyncautodelete: successful System Jobs are deleted (thousands a day otherwise); failed ones stay.
        # A synchronous step (online map) makes no System Job; it runs in the save's transaction, after the
        # row is written (PostOperation: the row id and the post image exist) and before it commits.
        wanted: dict[str, Any] = ({"stage": POST_OPERATION, "mode": SYNCHRONOUS, "asyncautodelete": False}
                                  if plan.online else
                                  {"stage": POST_OPERATION, "mode": ASYNCHRONOUS, "asyncautodelete": True})
        found = await self.client.query(
            "sdkmessageprocessingsteps", filter=f"name eq {_quote(name)} and _eventhandler_value eq {endpoint_id}")
        if not found:
            body = {
                "name": name, **wanted, "rank": 1, "supporteddeployment": 0,
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
                "sdkmessageid@odata.bind": f"/sdkmessages({await self.message_id(message)})",
                "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({await self.filter_id(message, plan.table)})",
            }
            if filtering:
                body["filteringattributes"] = filtering
            step_id = await self.client.create("sdkmessageprocessingsteps", body)
            self.report.add("dataverse_step", name, "created", f"filteringattributes: {filtering}" if filtering else "")
        else:
            row = found[0]
            step_id = str(row["sdkmessageprocessingstepid"])
            differs = [k for k, v in wanted.items() if row.get(k) != v]
            if _attribute_set(row.get("filteringattributes")) != _attribute_set(filtering):
                differs.append("filteringattributes")
            if differs:
                await self.client.update("sdkmessageprocessingsteps", step_id,
                                         {**wanted, "filteringattributes": filtering})
                self.report.add("dataverse_step", name, "updated", "changed: " + ", ".join(differs))
            else:
                self.report.add("dataverse_step", name, "unchanged")
        await self.images(step_id, name, message, plan)

    async def images(self, step_id: str, step_name: str, message: str, plan: TableSteps) -> None:
        wanted: dict[str, tuple[int, tuple[str, ...]]] = {}
        if message == "Update":
            wanted["PostImage"] = (POST_IMAGE, plan.attributes)
        elif message == "Delete":
            wanted["PreImage"] = (PRE_IMAGE, plan.key_attributes)
        existing = await self.client.query(
            "sdkmessageprocessingstepimages", filter=f"_sdkmessageprocessingstepid_value eq {step_id}")
        by_alias = {str(row.get("entityalias")): row for row in existing}
        for alias, image in by_alias.items():
            if alias not in wanted:
                await self.client.delete("sdkmessageprocessingstepimages",
                                         str(image["sdkmessageprocessingstepimageid"]))
                self.report.add("dataverse_image", f"{step_name} / {alias}", "deleted", "not wanted")
        for alias, (imagetype, attributes) in wanted.items():
            label = f"{step_name} / {alias}"
            text = ",".join(attributes)
            row = by_alias.get(alias)
            if row is None:
                await self.client.create("sdkmessageprocessingstepimages", {
                    "name": alias, "entityalias": alias, "imagetype": imagetype, "messagepropertyname": "Target",
                    "attributes": text,
                    "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step_id})"})
                self.report.add("dataverse_image", label, "created", f"attributes: {text}")
            elif row.get("imagetype") != imagetype or _attribute_set(row.get("attributes")) != set(attributes):
                await self.client.update("sdkmessageprocessingstepimages", str(row["sdkmessageprocessingstepimageid"]),
                                         {"imagetype": imagetype, "attributes": text})
                self.report.add("dataverse_image", label, "updated", f"attributes: {text}")
            else:
                self.report.add("dataverse_image", label, "unchanged")


async def deploy_dataverse(maps: MapSet, client: DataverseApi, *, app_url: str, ingest_key: str,
                           report: DeployReport) -> None:
    deployment = _DataverseDeployment(client, report)
    tables = sorted({m.dataverse.table for m in maps.values() if m.enabled and m.sends_to("fno")})
    if not tables:
        return
    plan = dataverse_plan(maps, await deployment.navigation(tables))
    try:
        endpoint_id = await deployment.endpoint(app_url.rstrip("/") + DATAVERSE_ROUTE, ingest_key)
    except Exception as error:
        report.add("dataverse_endpoint", ENDPOINT_NAME, "failed", f"{type(error).__name__}: {error}")
        return
    for table in plan:
        await deployment.steps(endpoint_id, table)


# ------------------------------------------------------------------------------------------------- F&O


class FnoEvents:
    """The simulator's business-events admin API (`<F&O URL>/admin/...`) over a shared AsyncClient."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self.client.request(method, f"admin/{path}", json=body)
        except httpx.HTTPError as error:
            raise EndpointNotAnswering(f"F&O admin API unreachable: {type(error).__name__}: {error}") from error
        if response.status_code >= 400:
            detail = response.text
            with contextlib.suppress(ValueError):
                detail = str(response.json().get("detail") or response.json().get("title") or detail)
            # The activation's test message failing is the ingest endpoint not answering (yet).
            transient = "test message" in detail or response.status_code >= 500
            kind = EndpointNotAnswering if transient else RegistrationRefused
            raise kind(f"{method} /admin/{path}: HTTP {response.status_code}: {detail}")
        return response.json() if response.content else None

    async def endpoints(self) -> list[dict[str, Any]]:
        return await self._call("GET", "endpoints")

    async def put_endpoint(self, config: dict[str, Any]) -> None:
        await self._call("POST", "endpoints", config)

    async def activations(self) -> list[dict[str, Any]]:
        return await self._call("GET", "activations")

    async def activate(self, event_id: str, legal_entity: str, endpoint: str) -> dict[str, Any]:
        return await self._call("POST", "activations",
                                {"eventId": event_id, "legalEntity": legal_entity, "endpoint": endpoint})

    async def set_active(self, activation_id: int, active: bool) -> None:
        await self._call("PATCH", f"activations/{activation_id}", {"active": active})


async def deploy_fno(maps: MapSet, events: FnoEvents, *, app_url: str, ingest_key: str, report: DeployReport,
                     activation_timeout: float = 60.0) -> None:
    event_ids = fno_plan(maps)
    if not event_ids:
        return
    url = app_url.rstrip("/") + FNO_ROUTE
    try:
        existing = {e["name"]: e for e in await events.endpoints()}
        current = existing.get(FNO_ENDPOINT_NAME)
        # The key is always re-sent: F&O masks it on reading, so a changed key cannot be seen, and
        # writing the same configuration again changes nothing.
        await events.put_endpoint({"name": FNO_ENDPOINT_NAME, "type": "https", "url": url,
                                   "headerName": "x-functions-key", "headerValue": ingest_key})
        if current is None:
            report.add("fno_endpoint", FNO_ENDPOINT_NAME, "created", url)
        elif current.get("url") != url or current.get("headerName") != "x-functions-key":
            report.add("fno_endpoint", FNO_ENDPOINT_NAME, "updated", url)
        else:
            report.add("fno_endpoint", FNO_ENDPOINT_NAME, "unchanged", f"{url} (key re-sent: F&O does not show it)")
        activations = await events.activations()
    except DeployError as error:
        report.add("fno_endpoint", FNO_ENDPOINT_NAME, "failed", str(error))
        return
    ours = {a["eventId"]: a for a in activations if a["endpoint"] == FNO_ENDPOINT_NAME and a["legalEntity"] == ""}
    deadline = time.monotonic() + activation_timeout
    for event_id in event_ids:
        found = ours.get(event_id)
        try:
            if found is None:
                await _activate_with_retry(events, event_id, deadline)
                report.add("fno_activation", event_id, "created", "all legal entities")
            elif not found["active"]:
                await events.set_active(int(found["id"]), True)
                report.add("fno_activation", event_id, "updated", "re-activated")
            else:
                report.add("fno_activation", event_id, "unchanged")
        except DeployError as error:
            report.add("fno_activation", event_id, "failed", str(error))


async def _activate_with_retry(events: FnoEvents, event_id: str, deadline: float) -> None:
    delay = 0.5
    while True:
        try:
            await events.activate(event_id, "", FNO_ENDPOINT_NAME)
            return
        except EndpointNotAnswering as error:
            if time.monotonic() + delay > deadline:
                raise EndpointNotAnswering(f"gave up: {error}") from None
            log.info("deploy: %s not activated yet, the ingest endpoint is not answering; retry in %.1f s",
                     event_id, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)


# ------------------------------------------------------------------------------------------------- both


async def deploy(maps: MapSet, *, dataverse: DataverseApi, fno_admin: httpx.AsyncClient | FnoEvents, app_url: str,
                 ingest_key: str, activation_timeout: float = 60.0) -> DeployReport:
    """Register what the enabled maps need on both sides; see the module docstring. `fno_admin` is an
    AsyncClient whose base URL is the F&O environment root (or an FnoEvents)."""
    if not app_url or not ingest_key:
        raise ValueError("deploy needs app_url and ingest_key")
    report = DeployReport()
    events = fno_admin if isinstance(fno_admin, FnoEvents) else FnoEvents(fno_admin)
    try:
        await deploy_dataverse(maps, dataverse, app_url=app_url, ingest_key=ingest_key, report=report)
    except Exception as error:  # a host keeps running whatever Dataverse answers
        report.add("dataverse_endpoint", ENDPOINT_NAME, "failed", f"{type(error).__name__}: {error}")
    # The client's writes skip our own webhook steps (core.ops.steps): they may have just been created
    # or re-created, so look their ids up again now rather than when the cache gets old.
    own_steps = getattr(dataverse, "write_headers", None)
    if isinstance(own_steps, OwnSteps):
        await own_steps.refresh()
    try:
        await deploy_fno(maps, events, app_url=app_url, ingest_key=ingest_key, report=report,
                         activation_timeout=activation_timeout)
    except Exception as error:
        report.add("fno_endpoint", FNO_ENDPOINT_NAME, "failed", f"{type(error).__name__}: {error}")
    log.info("deploy: done %s", report.counts())
    return report
