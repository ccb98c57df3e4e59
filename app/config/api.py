"""Small helpers for the JSON endpoints: read a form or JSON body, and answer errors as JSON."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse


class BadRequest(Exception):
    """The client sent something we cannot use; the message says what, and becomes a 400."""


def bad_request(reason: str) -> JsonResponse:
    return JsonResponse({"error": reason}, status=400)


def read_payload(request: HttpRequest) -> dict[str, Any]:
    """The body as a dict, from JSON (application/json) or a form (urlencoded or multipart)."""
    content_type = request.content_type or ""
    if content_type == "application/json":
        try:
            payload = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:  # ValueError covers JSONDecodeError
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise BadRequest('the JSON body must be an object, e.g. {"text": "hello"}')
        return payload
    if content_type in {"application/x-www-form-urlencoded", "multipart/form-data", ""}:
        form: dict[str, Any] = {}
        for key, values in request.POST.lists():
            if len(values) != 1:
                raise BadRequest(f"{key} is given {len(values)} times; give it once")
            form[key] = values[0]
        return form
    raise BadRequest(f"unsupported content type {content_type!r}: send application/json or form data")


def require_text(payload: dict[str, Any], field: str, *, max_length: int) -> str:
    if field not in payload or payload[field] is None:
        raise BadRequest(f"{field} is required")
    value = payload[field]
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise BadRequest(f"{field} must not be empty")
    if len(value) > max_length:
        raise BadRequest(f"{field} is {len(value)} characters; at most {max_length} are allowed")
    if "\x00" in value:
        raise BadRequest(f"{field} must not contain NUL characters")
    return value


def require_database() -> None:
    """Raises the database's error (a 503, see config.middleware) when Postgres cannot be reached now.

    For endpoints that enqueue work whose effect or result the worker writes to Postgres: refused at once,
    rather than accepted and left to the worker's retries. Opening a cursor runs Django's health check of a
    reused connection (CONN_HEALTH_CHECKS), which enqueueing alone does not."""
    with connection.cursor():
        pass
