"""A function app exercising the host's HTTP surface: route templates, methods, auth levels."""

import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _echo(name: str, req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "function": name,
        "method": req.method,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"x-echo": name})


@app.route(route="items/{id?}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def items(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("items", req)


@app.route(route="items/special", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def special(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("special", req)


@app.route(route="numbers/{n:int}", auth_level=func.AuthLevel.ANONYMOUS)
def numbers(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("numbers", req)


@app.route(route="files/{*rest}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("files", req)


@app.route(route="secure", methods=["GET", "DELETE"])
async def secure(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("secure", req)


@app.route(route="master-only", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return _echo("admin_only", req)


@app.route(route="plain", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def plain(req: func.HttpRequest) -> str:
    return "just text"


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("deliberate failure")


@app.function_name("default_route")
@app.route(methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def default_route_handler(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"function": context.function_name, "id": context.invocation_id}))
