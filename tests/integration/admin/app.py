"""The admin blueprint alone, so these tests do not depend on (or race with) the other triggers of
function_app.py, such as the apply function consuming the changes queue the resubmit test reads."""

import azure.functions as func

from functions import admin

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(admin.bp)
