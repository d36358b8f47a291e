"""Ingest, the OData service and the F&O-event notification timer: what F&O events need to reach a virtual table's
OnExternal* steps (no apply, which would consume the changes queue); the management API for the error log."""

import azure.functions as func

from functions import admin, ingest, odata, vt_events

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest.bp)
app.register_functions(odata.bp)
app.register_functions(vt_events.bp)
app.register_functions(admin.bp)
