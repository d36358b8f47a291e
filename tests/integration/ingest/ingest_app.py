"""The Function App with only the ingest blueprint: the real app also registers apply, which would
consume the changes queue these tests read back."""

import azure.functions as func

from functions import ingest

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest.bp)
