"""Small helpers for the JSON endpoints: read a form or JSON body, answer errors as JSON, and guard writes."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


def api_write(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A JSON endpoint that changes state. Exempt from Django's CSRF check, which guards a browser session that these
    do not use; with `API_WRITE_TOKEN` set (DJANGO_API_WRITE_TOKEN), a request other than GET or HEAD without
    `Authorization: Bearer <token>` is answered 401. Production requires the token for the example endpoints."""

    @csrf_exempt
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = settings.API_WRITE_TOKEN
        if token and request.method not in ("GET", "HEAD"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                response = JsonResponse(
                    {"error": "this endpoint needs Authorization: Bearer <its write token>"}, status=401
                )
                response["WWW-Authenticate"] = "Bearer"
                return response
        return view(request, *args, **kwargs)

    return guarded


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
