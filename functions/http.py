"""HTTP answers shared by the entry points: JSON bodies and RFC 9457 problem+json errors."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from core.settings import Settings, SettingsError, get_settings


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str), status_code=status, mimetype="application/json", headers=headers
    )


def settings_or_problem() -> Settings | func.HttpResponse:
    """The app's settings, or the 500 problem+json naming every bad setting (never their values)."""
    try:
        return get_settings()
    except SettingsError as exc:
        return problem(500, "Invalid settings", str(exc), invalid_settings=sorted(exc.problems))


def problem(status: int, title: str, detail: str, **extra: Any) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/problem+json")
