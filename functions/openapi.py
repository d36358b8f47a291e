"""GET /api/manage/v1/openapi.json: the management API's OpenAPI 3.1 document (core.ops.openapi)."""

from __future__ import annotations

import functools

import azure.functions as func

from core.ops.openapi import document_text
from functions.http import roles_refusal

bp = func.Blueprint()
_document = functools.cache(document_text)  # once per process, when first asked: it depends on the code only


@bp.route(route="manage/v1/openapi.json", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    refused = roles_refusal(req)
    if refused is not None:
        return refused
    return func.HttpResponse(_document(), status_code=200, mimetype="application/json")
