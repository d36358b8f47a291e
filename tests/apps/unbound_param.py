"""An app the real host refuses: `extra` is not bound to any binding."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="ok", auth_level=func.AuthLevel.ANONYMOUS)
def fine(req: func.HttpRequest) -> str:
    return "ok"


@app.route(route="broken", auth_level=func.AuthLevel.ANONYMOUS)
def broken_function(req: func.HttpRequest, extra: str) -> str:
    return extra
