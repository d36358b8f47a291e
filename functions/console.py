"""The operator console: one web page served by the function app itself, with its static assets.

  GET console                 the page (functions/console_static/index.html)
  GET console/{*path}         its assets (app.js, style.css, ...) from functions/console_static/ only
  GET console/meta.json       what the page needs to know about the engine: modes and the moves they allow,
                              outcomes, error categories and statuses, alert metrics' units (from core, so the
                              page never repeats them)

Anonymous: the page and its assets hold no secret and no data. Everything it shows comes from the management
API (`manage/v1/...`), which needs the admin key; the page sends the key it was opened with
(`.../api/console?code=<key>`, kept in the tab's sessionStorage and taken out of the address bar) as
`x-functions-key`, or asks for it. The route does not start with `admin` or `runtime` (reserved by the host).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from core import __version__
from core.ops.alerts.rules import UNITS as ALERT_UNITS
from core.store.activity import OUTCOMES
from core.store.errors import CATEGORIES, STATUSES
from core.sync.modes import ACTIONS, LABELS, TARGETS, TRANSITIONS

bp = func.Blueprint()
log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "console_static"
PAGE = "index.html"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# The page loads only its own assets and talks only to this app: no inline script, no other origin. The key
# travels in the page's address: never send it on as a referrer.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def meta() -> dict[str, object]:
    """What the page reads once at start: the mode machine (core/sync/modes.py) and the logs' vocabularies."""
    return {
        "version": __version__,
        "modes": {mode: {"label": LABELS[mode], "actions": [a for a, to in TARGETS.items() if to in allowed]}
                  for mode, allowed in TRANSITIONS.items()},
        "actions": list(ACTIONS),
        "outcomes": list(OUTCOMES),
        "categories": list(CATEGORIES),
        "statuses": list(STATUSES),
        "alert_units": dict(ALERT_UNITS),  # each alert metric's unit, as the engine words a rule's condition
    }


def asset(path: str) -> Path | None:
    """The file under STATIC that `path` names, or None: nothing outside the folder, no hidden or unknown files."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    if any(part == "" or part.startswith(".") for part in parts):  # '.', '..' and hidden files alike
        return None
    candidate = (STATIC / Path(*parts)).resolve()
    if not candidate.is_relative_to(STATIC.resolve()) or not candidate.is_file():
        return None
    return candidate if candidate.suffix.lower() in TYPES else None


def _base(req: func.HttpRequest) -> str:
    """The URL path the console lives under, ending in '/', as this request reached it (`/api/console/`)."""
    path = urlsplit(req.url).path
    at = path.lower().rfind("/console")
    return (path[:at] if at >= 0 else "/api") + "/console/"


def _send(body: bytes, content_type: str, req: func.HttpRequest) -> func.HttpResponse:
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**HEADERS, "ETag": tag, "Content-Type": content_type}
    if req.headers.get("if-none-match") == tag:
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(body, status_code=200, headers=headers)


def _not_found(path: str) -> func.HttpResponse:
    body = {"type": "about:blank", "title": "Not found", "status": 404, "detail": f"no console asset {path!r}"}
    return func.HttpResponse(json.dumps(body), status_code=404, mimetype="application/problem+json",
                             headers={"X-Content-Type-Options": "nosniff"})


@bp.route(route="console/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def console(req: func.HttpRequest) -> func.HttpResponse:
    path = (req.route_params.get("path") or "").strip("/")
    if path in ("", PAGE):
        base = _base(req)
        page = (STATIC / PAGE).read_text(encoding="utf-8")
        # asset links and the API root absolute, so the page works at .../console and .../console/ alike
        page = page.replace("{{BASE}}", base).replace("{{API}}", base[: -len("console/")])
        return _send(page.encode("utf-8"), TYPES[".html"], req)
    if path == "meta.json":
        return _send(json.dumps(meta()).encode("utf-8"), TYPES[".json"], req)
    found = asset(path)
    if found is None:
        return _not_found(path)
    return _send(found.read_bytes(), TYPES[found.suffix.lower()], req)
