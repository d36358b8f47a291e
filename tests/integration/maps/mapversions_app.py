"""The Function App with only the map versions blueprint: no triggers to consume anything, no deployment."""

import azure.functions as func

from functions import mapversions

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(mapversions.bp)
