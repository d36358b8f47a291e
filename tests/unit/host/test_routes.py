from __future__ import annotations

import pytest

from devstack.host.routes import RouteTemplateError, compile_route


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("customers", "customers", {}),
        ("customers", "Customers", {}),
        ("customers/{id}", "customers/C-1", {"id": "C-1"}),
        ("customers/{id}", "customers", None),
        ("customers/{id?}", "customers", {}),
        ("customers/{id?}", "customers/9", {"id": "9"}),
        ("customers/{id:int}", "customers/9", {"id": "9"}),
        ("customers/{id:int}", "customers/x9", None),
        ("c/{id:guid}", "c/6f9619ff-8b86-d011-b42d-00c04fc964ff", {"id": "6f9619ff-8b86-d011-b42d-00c04fc964ff"}),
        ("customers/{id:alpha}", "customers/abc", {"id": "abc"}),
        ("customers/{id:bool}", "customers/True", {"id": "True"}),
        ("docs/{*path}", "docs/a/b/c", {"path": "a/b/c"}),
        ("docs/{*path}", "docs", {}),
        ("files/{name}.{ext}", "files/report.pdf", {"name": "report", "ext": "pdf"}),
        ("a/{x}/b/{y}", "a/1/b/2", {"x": "1", "y": "2"}),
        ("a/{x}/b/{y}", "a/1/c/2", None),
    ],
)
def test_match(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert compile_route(template).match(path) == expected


def test_precedence_orders_literal_then_constrained_then_parameter_then_optional_then_catch_all() -> None:
    order = ["x/lit", "x/{a:int}", "x/{a}", "x/{a?}", "x/{*a}"]
    shuffled = [order[3], order[0], order[4], order[2], order[1]]
    assert sorted(shuffled, key=lambda t: compile_route(t).precedence) == order


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a/{x?}/b", "must be the whole last segment"),
        ("a/{*x}/b", "must be the whole last segment"),
        ("a/{x", "unbalanced braces"),
        ("a/{x}/{x}", "appears twice"),
        ("a/{x:nope}", "unknown constraint"),
        ("a/{1x}", "invalid parameter name"),
        ("a//b", "empty segment"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(template: str, message: str) -> None:
    with pytest.raises(RouteTemplateError, match=message):
        compile_route(template)
