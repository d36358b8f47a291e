"""The OData blueprint alone, so the virtual table tests need no Service Bus and race with no other trigger."""

import azure.functions as func

from functions import odata

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(odata.bp)
