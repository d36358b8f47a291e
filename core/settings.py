"""Every setting the engine reads, in one pydantic-settings model, from environment variables.

The names are the environment variable names; local.settings.sample.json and infra/ use the same.
Secrets are SecretStr so they never reach a log or a repr. A missing or malformed setting fails
with SettingsError naming the variable, never echoing its value.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A setting is missing or malformed. `problems` maps variable name to what is wrong."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        lines = [f"setting {name}: {problem}" for name, problem in problems.items()]
        super().__init__("invalid settings:\n  " + "\n  ".join(lines))


def parse_connection_string(text: str) -> dict[str, str]:
    """`Key=Value;Key=Value` into a dict with case-insensitive lookups by lower-cased key."""
    parts: dict[str, str] = {}
    for piece in text.split(";"):
        if not piece.strip():
            continue
        key, sep, value = piece.partition("=")
        if not sep:
            raise ValueError(f"expected Key=Value pairs separated by ';', found {key.strip()[:20]!r}")
        parts[key.strip().lower()] = value.strip()
    return parts


# Identity-based connections: the Functions host's convention `<CONNECTION>__<property>`, read by the host for its
# triggers (SERVICEBUS_CONNECTION, AzureWebJobsStorage) and by the engine for its own clients. When a connection
# string is not set, these make the connection: a namespace or service URI, reached with azure-identity
# (`__credential` = managedidentity and `__clientId`: that user-assigned identity; else DefaultAzureCredential).
IDENTITY_SETTINGS = {
    "servicebus_connection": ("fullyQualifiedNamespace", "credential", "clientId"),
    "table_storage_connection": ("tableServiceUri", "accountName", "credential", "clientId"),
}


def identity_connection(parts: dict[str, str]) -> str:
    """The `Key=Value;...` text the engine's clients take for an identity-based connection (no secret in it):
    e.g. `FullyQualifiedNamespace=ns.servicebus.windows.net;Credential=managedidentity;ClientId=...`."""
    return ";".join(f"{key[0].upper()}{key[1:]}={value}" for key, value in parts.items() if value)


def _identity_parts(data: dict[str, Any], connection: str) -> dict[str, str]:
    """The `<connection>__<property>` values present in `data` (any case), by property name."""
    lowered = {str(k).lower(): v for k, v in data.items()}
    found: dict[str, str] = {}
    for prop in IDENTITY_SETTINGS[connection]:
        value = lowered.get(f"{connection}__{prop.lower()}")
        if isinstance(value, str) and value.strip():
            found[prop] = value.strip()
    return found


def _check_servicebus(value: SecretStr) -> SecretStr:
    parts = parse_connection_string(value.get_secret_value())
    if "fullyqualifiednamespace" in parts:  # identity-based (SERVICEBUS_CONNECTION__fullyQualifiedNamespace)
        if "://" in parts["fullyqualifiednamespace"] or "." not in parts["fullyqualifiednamespace"]:
            raise ValueError("__fullyQualifiedNamespace takes a host name such as <namespace>.servicebus.windows.net")
        return value
    endpoint = parts.get("endpoint", "")
    if not endpoint.startswith("sb://"):
        raise ValueError("needs Endpoint=sb://<namespace>/ (and SharedAccessKey..., or UseDevelopmentEmulator=true)")
    has_key = "sharedaccesskey" in parts or "sharedaccesssignature" in parts
    if not has_key and parts.get("usedevelopmentemulator") != "true":
        raise ValueError("needs SharedAccessKeyName/SharedAccessKey or SharedAccessSignature")
    return value


def _check_storage(value: SecretStr) -> SecretStr:
    parts = parse_connection_string(value.get_secret_value())
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return value
    if "tableserviceuri" in parts:  # identity-based (TABLE_STORAGE_CONNECTION__tableServiceUri or __accountName)
        if not parts["tableserviceuri"].startswith("https://"):
            raise ValueError("__tableServiceUri takes https://<account>.table.core.windows.net")
        return value
    if "accountname" not in parts or not ({"accountkey", "sharedaccesssignature"} & parts.keys()):
        raise ValueError("needs AccountName and AccountKey (or SharedAccessSignature), or UseDevelopmentStorage=true")
    if "tableendpoint" not in parts and "defaultendpointsprotocol" not in parts:
        raise ValueError("needs TableEndpoint=... or DefaultEndpointsProtocol=https")
    return value


class Settings(BaseSettings):
    """The engine's configuration. Field `x_y` is read from environment variable `X_Y`."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Where state and queues live.
    table_storage_connection: SecretStr = Field(
        description="Table Storage connection string (maps, links, logs); in Azure unset, and "
        "TABLE_STORAGE_CONNECTION__tableServiceUri (or __accountName) with __credential/__clientId instead")
    servicebus_connection: SecretStr = Field(
        description="Service Bus connection string; in Azure unset, and SERVICEBUS_CONNECTION__fullyQualifiedNamespace "
        "with __credential/__clientId instead")
    # The identity-based parts (IDENTITY_SETTINGS); read only when the connection string above is not set.
    servicebus_connection__fullyqualifiednamespace: str | None = None
    servicebus_connection__credential: str | None = None
    servicebus_connection__clientid: str | None = None
    table_storage_connection__tableserviceuri: str | None = None
    table_storage_connection__accountname: str | None = None
    table_storage_connection__credential: str | None = None
    table_storage_connection__clientid: str | None = None
    changes_queue: str = Field("changes", min_length=1, description="session-enabled queue of change events")
    fno_events_queue: str = Field("fno-events", min_length=1, description="queue F&O delivers events to directly")
    sync_pages_queue: str = Field("sync-pages", min_length=1, description="queue of initial-sync page jobs")

    # The two systems.
    dataverse_url: AnyHttpUrl = Field(description="Dataverse environment URL, e.g. https://org.crm.dynamics.com")
    fno_url: AnyHttpUrl = Field(description="F&O environment URL, e.g. https://env.operations.dynamics.com")
    auth_mode: Literal["msal", "identity", "local"] = Field(
        "msal", description="msal: Entra ID client credentials of an app registration; identity: azure-identity "
        "(the app's managed identity in Azure); local: a static bearer token for the simulators"
    )
    tenant_id: str | None = Field(None, description="Entra ID tenant of the application user (msal mode)")
    client_id: str | None = Field(
        None, description="application (client) id (msal mode); identity mode: the user-assigned managed "
        "identity's client id (unset: DefaultAzureCredential picks)")
    client_secret: SecretStr | None = Field(None, description="client secret (msal; a Key Vault reference in Azure)")

    maps_path: str = Field("maps", description="folder of map JSON files loaded at start")

    # Live sync.
    app_url: AnyHttpUrl | None = Field(
        None, description="Where Dataverse and F&O reach this Function App (webhook and event endpoint "
        "registration); unset = register nothing")
    ingest_key: SecretStr | None = Field(
        None, description="Function key Dataverse (WebhookKey) and F&O send to the ingest functions")
    deploy_on_start: bool = Field(True, description="Register webhook steps and activate F&O events at start")
    sweep_enabled: bool = Field(
        True, description="At start and every SWEEP_INTERVAL_SECONDS, find changes whose delivery failed while the "
        "app was down (Dataverse: failed System Jobs of our webhook steps; F&O: rows modified since the last sweep) "
        "and send them through the normal path (core/sync/sweep.py)")
    sweep_interval_seconds: int = Field(
        60, ge=0, le=86400, description="Least time between two sweeps of an instance (its timer looks every minute; "
        "it also sweeps at start)")
    sweep_dataverse: Literal["jobs", "changes", "both"] = Field(
        "jobs", description="What the sweep reads in Dataverse: jobs (the failed System Jobs of our webhook steps, "
        "replayed), changes (change tracking of the mapped tables since the last delta token: every change, the "
        "engine's own writes included, is read again once) or both")
    sweep_overlap_seconds: int = Field(
        60, ge=0, le=3600, description="Each sweep reads again this far before its checkpoint, for changes "
        "committed late; what it already sent from there is not sent twice")
    validity_enabled: bool = Field(
        True, description="Every minute, send again the date-effective rows (maps with a validity) whose window "
        "opened or closed since the last run, so a future-dated address becomes primary on its date "
        "(core/sync/validity.py)")
    apply_max_attempts: int = Field(
        5, ge=1, le=9, description="Deliveries of a change before a transient failure goes to the error log "
        "(below the queue's MaxDeliveryCount)")
    apply_session_buckets: int = Field(
        16, ge=1, le=4096, description="Sessions per map on the changes queue: a record's changes share the "
        "session of its key's bucket. More buckets spread a burst over more instances in Azure; fewer make "
        "bigger batches")
    apply_retry_horizon_seconds: int = Field(
        86400, ge=60, description="How long a change whose target is down or throttling keeps being retried "
        "(capped exponential backoff) before it goes to the error log")
    apply_auto_pause_seconds: int = Field(
        300, ge=0, description="A target failing with outage errors (down, throttling) for this long pauses the "
        "map: its changes park, the target is probed, and the map catches up by itself once it answers; 0: "
        "never (changes keep being retried for APPLY_RETRY_HORIZON_SECONDS)")
    apply_backoff_cap_seconds: int = Field(
        300, ge=1, le=3600, description="Longest wait between two attempts of a change")
    odata_batch_parts: int = Field(
        100, ge=0, le=1000, description="Requests to Dataverse or F&O made at about the same time (records "
        "applied side by side) go out as one $batch of at most this many parts; 0 or 1: one request each")
    sync_page_size: int = Field(
        1000, ge=1, le=5000, description="Rows per page of an initial sync or reconciliation (one sync-pages "
        "job each; Dataverse serves at most 5,000 a page)")
    engine_user_id: str | None = Field(
        None, description="Entra object id the engine writes as: events it initiated are flagged as echoes")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # ---- metrics, tracing, alerts (core/ops/metrics, core/ops/telemetry, core/ops/alerts, core/ops/notify) ----
    telemetry_enabled: bool = Field(
        True, description="Count what apply does per map and minute (metrics, alerts) and trace each change from "
        "ingest to the target write; false: neither (the bench measures what they cost)")
    metrics_flush_seconds: float = Field(
        10.0, gt=0, le=300, description="How often an instance writes its counts to Table Storage (`metrics`): "
        "the metrics and alerts see an instance's work this late at most")
    alert_webhook_url: AnyHttpUrl | None = Field(
        None, description="Where alert notifications are POSTed (unset: no webhook notifications)")
    alert_webhook_format: Literal["json", "teams", "slack"] = Field(
        "json", description="Body of the webhook notification: json (documented), teams (an Adaptive Card) or slack")
    alert_smtp_host: str | None = Field(None, description="SMTP server for alert e-mails (unset: no e-mail)")
    alert_smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port")
    alert_smtp_tls: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (587), tls (implicit TLS, 465) or none (a local relay only)")
    alert_smtp_user: str | None = Field(None, description="SMTP user name (unset: no login)")
    alert_smtp_password: SecretStr | None = Field(
        None, description="SMTP password (a Key Vault reference in Azure)")
    alert_email_from: str | None = Field(None, description="Sender address of alert e-mails")
    alert_email_to: str | None = Field(
        None, description="Default recipients of alert e-mails, comma-separated (a rule may name its own)")

    # ---- virtual tables: the OData v4 service Dataverse's OData v4 Data Provider reads (core/virtual) ----
    virtual_tables_path: str = Field("virtualtables", description="folder of virtual table definitions (JSON)")
    virtual_tables_key: SecretStr | None = Field(
        None, description="Key the data source sends (a request parameter of msdyn_odatav4ds) in the "
        "VIRTUAL_TABLES_KEY_HEADER header or the VIRTUAL_TABLES_KEY_PARAM query parameter; unset: the service "
        "answers every request with 401")
    virtual_tables_key_header: str = Field("x-vt-key", min_length=1, description="header carrying the key")
    virtual_tables_key_param: str = Field("vtkey", min_length=1, description="query parameter carrying the key")
    virtual_tables_app_role: str = Field(
        "", description="app role (Entra ID) whose holders App Service authentication signed in are served without "
        "the key; set only with App Service authentication in front (it sets x-ms-client-principal and strips a "
        "client's own); empty: the key only")
    virtual_tables_sql_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL of the SQL database of SQL-backed virtual tables (their url_setting "
        "default), e.g. postgresql+psycopg://..., mssql+pyodbc://..., sqlite:///path")
    virtual_tables_sql_echo: bool = Field(
        False, description="Log each SQL statement a virtual table issues (its text with placeholders, never the "
        "values): shows what a $filter became")
    vt_events_max_attempts: int = Field(
        10, ge=1, le=1000, description="Runs (one a minute) an F&O event notification of a virtual table may fail "
        "transiently before it is moved to the error log so the table's later notifications go on; a refusal "
        "(4xx) goes there at once")

    _servicebus = field_validator("servicebus_connection")(_check_servicebus)
    _storage = field_validator("table_storage_connection")(_check_storage)

    @model_validator(mode="before")
    @classmethod
    def _identity_connections(cls, data: Any) -> Any:
        """A connection string that is not set is made from its `<NAME>__<property>` identity settings."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for connection in IDENTITY_SETTINGS:
            given = data.get(connection)
            text = given.get_secret_value() if isinstance(given, SecretStr) else given
            if isinstance(text, str) and text.strip():
                continue
            parts = _identity_parts(data, connection)
            if connection == "table_storage_connection" and "accountName" in parts and "tableServiceUri" not in parts:
                parts = {"tableServiceUri": f"https://{parts['accountName']}.table.core.windows.net", **parts}
            parts.pop("accountName", None)
            if "fullyQualifiedNamespace" in parts or "tableServiceUri" in parts:
                data[connection] = identity_connection(parts)
        return data

    @field_validator("app_url", "ingest_key", "engine_user_id", "alert_webhook_url", "alert_smtp_host",
                     "alert_smtp_user", "alert_smtp_password", "alert_email_from", "alert_email_to",
                     "virtual_tables_key", "virtual_tables_sql_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dataverse_url", "fno_url")
    @classmethod
    def _no_path(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.path not in (None, "", "/"):
            raise ValueError("give the environment's root URL only, without a path such as /api/data or /data")
        return value

    @model_validator(mode="after")
    def _credentials_for_msal(self) -> Settings:
        if self.auth_mode == "msal":
            missing = [n for n in ("tenant_id", "client_id", "client_secret") if getattr(self, n) in (None, "")]
            if missing:
                raise ValueError(f"AUTH_MODE=msal needs {', '.join(n.upper() for n in missing)}")
        return self


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment); raise SettingsError naming each bad one."""
    try:
        if env is None:
            return Settings()  # values come from the environment
        lowered = {k.lower(): v for k, v in env.items()}  # `__` identity settings are fields too
        known: dict[str, Any] = {k: v for k, v in lowered.items() if k in Settings.model_fields}
        return Settings(_env_file=None, **known)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None


def _problems(exc: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False):
        text = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # the one cross-field rule: credentials that AUTH_MODE=msal needs
            problems["AUTH_MODE"] = text
            continue
        name = ".".join(str(part) for part in error["loc"]).upper()
        problems[name] = "is missing" if error["type"] == "missing" else f"is malformed: {text}"
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (Function App settings do not change without a restart)."""
    return load_settings()
