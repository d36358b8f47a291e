"""The Azure Functions entry point (Python v2 programming model): one blueprint per concern."""

import azure.functions as func

from core.ops import redact, telemetry
from core.settings import SettingsError, get_settings
from functions import (
    admin,
    alerts,
    apply,
    console,
    deploy,
    health,
    ingest,
    maps,
    mapversions,
    metrics,
    modes,
    odata,
    openapi,
    sweep,
    sync,
    validity,
    vt_events,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _configure_telemetry() -> None:
    """Traces and metrics export, once per process, before any function runs (core.ops.telemetry). Bad settings are
    left to the runtime, which answers every call with what is wrong. Before anything logs: secrets out of every log
    line (core.ops.redact), the settings' values and anything shaped like a credential."""
    redact.install()
    try:
        settings = get_settings()
    except SettingsError:
        return
    redact.install(redact.secrets_of(settings))
    telemetry.configure(settings)


_configure_telemetry()

app.register_functions(health.bp)
app.register_functions(maps.bp)
app.register_functions(ingest.bp)
app.register_functions(deploy.bp)
app.register_functions(admin.bp)
app.register_functions(apply.bp)
app.register_functions(sync.bp)
app.register_functions(modes.bp)
app.register_functions(mapversions.bp)
app.register_functions(openapi.bp)
app.register_functions(console.bp)
app.register_functions(metrics.bp)
app.register_functions(alerts.bp)
app.register_functions(sweep.bp)
app.register_functions(odata.bp)
app.register_functions(vt_events.bp)
app.register_functions(validity.bp)
