"""The ingest and admin blueprints together: an F&O event refused by the fno-events trigger is read back
through the admin API. No apply function, so the changes queue a resubmission fills can be read back."""

import azure.functions as func

from functions import admin, ingest

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest.bp)
app.register_functions(admin.bp)
