"""Virtual tables told about F&O events: every minute, the outbox the ingest fills (core.virtual.events) is told to
Dataverse as OnExternalCreated / OnExternalUpdated / OnExternalDeleted; without a definition asking for it
(`notify.fno_events`) it does nothing. A notification refused, or failing VT_EVENTS_MAX_ATTEMPTS runs, goes to the
error log (GET /api/manage/v1/errors), where it is resubmitted or discarded."""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from core.settings import SettingsError, get_settings
from core.virtual.catalog import DefinitionError

bp = func.Blueprint()
log = logging.getLogger(__name__)
_teller: Any = None


async def _close() -> None:
    global _teller
    teller, _teller = _teller, None
    if teller is not None:
        await teller[0].http.aclose()
        await teller[1].tables.close()  # the error log shares the outbox's Table Storage client


@bp.timer_trigger(schedule="30 * * * * *", arg_name="timer", run_on_startup=False)
async def vt_fno_events(timer: func.TimerRequest) -> None:
    global _teller
    from functions.odata import service

    try:
        svc = service()
    except (SettingsError, DefinitionError) as error:
        log.warning("virtual table F&O event notifications skipped: %s", error)
        return
    if not any(t.notify is not None and t.notify.fno_events for t in svc.tables.values()):
        return
    if _teller is None:
        from core.connectors.dataverse import DataverseClient
        from core.store.errors import ErrorLog
        from core.store.tables import Tables
        from core.virtual.app import tokens_for
        from core.virtual.events import Outbox
        from core.virtual.notify import WebApiEvents

        settings = get_settings()
        url = str(settings.dataverse_url).rstrip("/")
        client = DataverseClient(url, tokens_for(settings, url))
        tables = Tables(settings.table_storage_connection.get_secret_value())
        _teller = (WebApiEvents(client.http), Outbox(tables), ErrorLog(tables))
        from functions.runtime import close_on_stop

        close_on_stop("virtual table F&O event teller", _close)
    from core.virtual.events import deliver

    await deliver(svc, _teller[0], _teller[1], _teller[2], max_attempts=get_settings().vt_events_max_attempts)
