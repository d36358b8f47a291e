"""HTTP trigger route templates, matched the way the Functions host (ASP.NET Core routing) does.

Supported: literal segments (case-insensitive), `{name}`, `{name?}` (last segment only),
`{*name}` catch-all (last segment only), inline constraints `{name:int}` `{name:long}`
`{name:guid}` `{name:alpha}` `{name:bool}` `{name:double}` `{name:decimal}` `{name:datetime}`,
and several parameters inside one segment (`files/{name}.{ext}`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PARAM = re.compile(r"\{([^{}]*)\}")

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "double": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
    "alpha": r"[A-Za-z]+",
    "datetime": r"[0-9][0-9T:.\-+Z ]*",
}

# Precedence per segment as ASP.NET orders routes: literals first, catch-alls last.
_LITERAL, _CONSTRAINED, _PARAMETER, _OPTIONAL, _CATCH_ALL = range(5)


class RouteTemplateError(ValueError):
    """A route template the Functions host would refuse."""


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str] = field(repr=False)
    params: tuple[str, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (without prefix or leading slash), or None if it does not match."""
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {name: value for name, value in found.groupdict().items() if value is not None}


def compile_route(template: str) -> RouteTemplate:
    """Parse a route template; raise RouteTemplateError saying what is wrong."""
    segments = [s for s in template.strip("/").split("/")]
    if template.strip("/") == "":
        segments = []
    regex_parts: list[str] = []
    params: list[str] = []
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "":
            raise RouteTemplateError(f"route {template!r}: empty segment")
        regex, kind = _compile_segment(template, segment, last, params)
        regex_parts.append((regex, kind))
        precedence.append(kind)
    pattern = ""
    for index, (regex, kind) in enumerate(regex_parts):
        sep = "" if index == 0 else "/"
        # An optional or catch-all last segment may be absent together with its slash.
        pattern += f"(?:{sep}{regex})?" if kind in (_OPTIONAL, _CATCH_ALL) else f"{sep}{regex}"
    return RouteTemplate(template, re.compile(pattern, re.IGNORECASE), tuple(params), tuple(precedence))


def _compile_segment(template: str, segment: str, last: bool, params: list[str]) -> tuple[str, int]:
    if "{" not in segment and "}" not in segment:
        return re.escape(segment), _LITERAL
    pieces = _PARAM.split(segment)  # literal, param, literal, param, ..., literal
    if any("{" in p or "}" in p for p in pieces[::2]):
        raise RouteTemplateError(f"route {template!r}: unbalanced braces in segment {segment!r}")
    kind = _LITERAL
    regex = ""
    single = len(pieces) == 3 and pieces[0] == "" and pieces[2] == ""
    for position, piece in enumerate(pieces):
        if position % 2 == 0:
            regex += re.escape(piece)
            continue
        name, constraint, optional, catch_all = _parse_param(template, piece)
        if name in params:
            raise RouteTemplateError(f"route {template!r}: parameter {name!r} appears twice")
        params.append(name)
        if (optional or catch_all) and not (single and last):
            what = "optional" if optional else "catch-all"
            raise RouteTemplateError(f"route {template!r}: {what} parameter {name!r} must be the whole last segment")
        if catch_all:
            regex += f"(?P<{name}>.*)"
            kind = _CATCH_ALL
        else:
            body = _CONSTRAINTS[constraint] if constraint else "[^/]+?" if not single else "[^/]+"
            regex += f"(?P<{name}>{body})"
            kind = max(kind, _OPTIONAL if optional else _CONSTRAINED if constraint else _PARAMETER)
    return regex, kind


def _parse_param(template: str, text: str) -> tuple[str, str | None, bool, bool]:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    optional = text.endswith("?")
    text = text.rstrip("?")
    name, _, constraint = text.partition(":")
    if constraint.endswith("?"):  # `{id:int?}`
        optional, constraint = True, constraint[:-1]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"route {template!r}: invalid parameter name {name!r}")
    if constraint and constraint not in _CONSTRAINTS:
        raise RouteTemplateError(f"route {template!r}: unknown constraint {constraint!r} on {name!r}")
    return name, constraint or None, optional, catch_all
