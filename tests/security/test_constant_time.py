"""Keys and secrets are compared in constant time (hmac.compare_digest), never with `==`.

A plain comparison returns at the first differing byte, so its timing tells a caller how much of a guessed key
was right. The check reads the source (AST) of everything that serves requests or handles keys: a comparison
(`==`, `!=`, `in`, `not in`) one of whose sides is a key, secret or password (by the name it is held under, or
read from where callers put keys: the x-functions-key header, the `code` parameter, Authorization) fails it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["core", "functions", "devstack", "function_app.py"]

# Names that hold a credential (the last identifier of a name or attribute chain).
_SECRET_NAME = re.compile(
    r"(?i)^_?(?:\w+_)?(?:key|keys)$|secret|password|passwd|authvalue|auth_?value|header_?value|credential|signature"
)
# ... except the many keys that are not credentials: record keys, dict keys, cache keys, key columns.
_NOT_A_SECRET = re.compile(
    r"(?i)^_?(?:key|keys|row_key|partition_key|cache_key|sort_key|dedupe_key|lane_key|record_key|integration_key|"
    r"\w*_key_(?:fields|columns)|fno_key|dv_key|dataverse_key|target_key|source_key|link_key|alternate_key|"
    r"composite_key|key_text|keyname|keyval|lookup_key|map_key|session_key|event_key|group_key|bucket_key|"
    r"entity_key|primary_key|id_key|order_key|by_key|index_key|parent_key|child_key)$"
)
_CREDENTIAL_METHODS = {"get_secret_value"}
_CREDENTIAL_FUNCTIONS = re.compile(r"(?i)given_key|secret|password")
_CREDENTIAL_SOURCES = {"x-functions-key", "code", "authorization", "authvalue", "webhookkey", "headervalue"}


def _last_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_credential(node: ast.AST) -> bool:
    name = _last_name(node)
    if name is not None:
        return bool(_SECRET_NAME.search(name)) and not _NOT_A_SECRET.match(name) and _credential_key_name(name)
    if isinstance(node, ast.Call):
        called = _last_name(node.func)
        if called in _CREDENTIAL_METHODS or (called and _CREDENTIAL_FUNCTIONS.search(called)):
            return True
        if called == "get" and node.args and _source_literal(node.args[0]):
            return True  # headers.get("x-functions-key"), query_params.get("code")
        if called in {"encode", "strip", "lower"} and isinstance(node.func, ast.Attribute):
            return _is_credential(node.func.value)
    if isinstance(node, ast.Subscript):
        return _source_literal(node.slice)
    return False


def _credential_key_name(name: str) -> bool:
    """A bare `*_key` name is a credential only when its first part says so (master_key, ingest_key, api_key)."""
    lowered = name.lower().lstrip("_")
    if not lowered.endswith(("key", "keys")):
        return True
    return bool(re.match(r"(?:master|function|functions|host|ingest|api|access|account|shared_access|sas|webhook|"
                         r"given|accepted|expected|wanted_key$|system|app|client|admin|signing|storage)", lowered))


def _source_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in _CREDENTIAL_SOURCES


def _holds_credential(node: ast.AST, tainted: set[str]) -> bool:
    """A credential, a name given one earlier in the function, or a list, tuple or choice of them."""
    if isinstance(node, ast.Name) and node.id in tainted:
        return True
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return any(_holds_credential(element, tainted) for element in node.elts)
    if isinstance(node, ast.IfExp):
        return _holds_credential(node.body, tainted) or _holds_credential(node.orelse, tainted)
    if isinstance(node, ast.BoolOp):
        return any(_holds_credential(value, tainted) for value in node.values)
    if isinstance(node, ast.Call) and _last_name(node.func) in {"encode", "strip", "lower", "upper"}:
        return isinstance(node.func, ast.Attribute) and _holds_credential(node.func.value, tainted)
    return _is_credential(node)


def _tainted_names(scope: ast.AST) -> set[str]:
    """Names a scope binds to credentials (`given = _given_key(request)`, `for key in accepted`), to a fixed
    point, so a key that changes hands before it is compared is still a key."""
    tainted: set[str] = set()
    while True:
        before = len(tainted)
        for node in ast.walk(scope):
            pairs: list[tuple[ast.AST, ast.AST]] = []
            if isinstance(node, ast.Assign):
                pairs = [(target, node.value) for target in node.targets]
            elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
                pairs = [(node.target, node.value)]
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                pairs = [(node.target, node.iter)]
            for target, value in pairs:
                if isinstance(target, ast.Name) and _holds_credential(value, tainted):
                    tainted.add(target.id)
        if len(tainted) == before:
            return tainted


def plain_secret_comparisons(source: str, filename: str = "<source>") -> list[str]:
    """`file:line: text` of every comparison of a credential with ==, !=, in or not in."""
    found: dict[int, str] = {}
    tree = ast.parse(source, filename)
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]
    for scope in scopes:
        tainted = _tainted_names(scope) if scope is not tree else set()
        for node in ast.walk(scope):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
                continue
            if any(_holds_credential(side, tainted) for side in [node.left, *node.comparators]):
                found[id(node)] = f"{filename}:{node.lineno}: {ast.unparse(node)}"
    return sorted(set(found.values()))


def _files() -> list[Path]:
    files: list[Path] = []
    for entry in SCANNED:
        path = ROOT / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_no_key_or_secret_is_compared_with_a_plain_comparison() -> None:
    found = []
    for path in _files():
        found += plain_secret_comparisons(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == [], "compare keys and secrets with hmac.compare_digest:\n" + "\n".join(found)


def test_the_keys_are_checked_with_compare_digest_where_the_host_checks_them() -> None:
    source = (ROOT / "devstack/host/http.py").read_text(encoding="utf-8")
    assert source.count("hmac.compare_digest(") >= 2  # function/master keys of routes, master key of /admin


def test_the_check_finds_the_comparisons_it_is_meant_to_find() -> None:
    flagged = [
        "ok = given == self.config.master_key",
        "if key != settings.ingest_key.get_secret_value(): pass",
        "if request.headers.get('x-functions-key') == expected: pass",
        "if req.params.get('code') in keys: pass",
        "allowed = _given_key(request) in accepted_keys",
        "same = password == other",
        "same = client_secret.encode() == b'x'",
        "same = row['authvalue'] != wanted",
        "same = self.function_key == given",
        # the key changes hands before it is compared (what the host's check would be without compare_digest)
        "def f(request):\n    given = _given_key(request)\n    accepted = [self.config.master_key]\n"
        "    return any(given == key.encode() for key in accepted if key)",
        "def f(request):\n    wanted = settings.ingest_key.get_secret_value()\n    return request.code != wanted",
    ]
    for line in flagged:
        assert plain_secret_comparisons(line), line
    clean = [
        "ok = hmac.compare_digest(given, self.config.master_key.encode())",
        "same = key == 'Target'",
        "if cache_key in self._ids: pass",
        "if row['Key'] == row_key: pass",
        "if key_fingerprint(a) == b: pass",
        "if response.status_code == 401: pass",
        "if master_key is None: pass",
        "if not master_key: pass",
        "def f(rows):\n    for key in rows:\n        if key == 'x': pass",
    ]
    for line in clean:
        assert not plain_secret_comparisons(line), line
