"""The Function App the fuzz runs against: the ingest functions and health, as function_app.py registers them,
without apply (which would work the accepted changes against no Dataverse or F&O) and the timers."""

import azure.functions as func

from functions import health, ingest

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health.bp)
app.register_functions(ingest.bp)
