"""The committed OpenAPI document is what the code generates, and it covers every management route the app has."""

from __future__ import annotations

import json

from core.ops.openapi import COMMITTED, OPERATIONS, PREFIX, document, document_text, main
from tests.fixtures.devhost import fresh_function_app


def test_committed_document_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == document_text(), (
        "docs/openapi.json is stale: run `.venv/bin/python -m core.ops.openapi --write`")


def test_every_management_route_of_the_app_is_described() -> None:
    routes = set()
    for function in fresh_function_app().get_functions():
        binding = function.get_trigger()
        route = getattr(binding, "route", None)
        if route and route.startswith("manage/v1/") and not route.endswith("openapi.json"):
            for method in binding.methods or []:
                routes.add((str(method.value if hasattr(method, "value") else method).lower(), "/api/" + route))
    described = {(op.method, PREFIX + op.path) for op in OPERATIONS}
    assert routes == described


def test_document_is_openapi_3_1_with_resolvable_references() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    text = json.dumps(doc)
    schemas = doc["components"]["schemas"]
    for name in {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}:
        assert name in schemas, name
    put = doc["paths"]["/api/manage/v1/maps/{map}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TableMap"}
    assert "application/problem+json" in put["responses"]["default"]["content"]


def test_the_module_prints_the_document(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 0
    assert json.loads(capsys.readouterr().out)["openapi"] == "3.1.0"
