"""The console blueprint alone: the page and its assets need neither Table Storage nor Service Bus."""

import azure.functions as func

from functions import console

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(console.bp)
