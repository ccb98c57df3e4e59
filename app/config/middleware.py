"""Postgres or Redis down: every request gets a 503 JSON answer with Retry-After, never a 500 or an HTML page.

A view's error reaches process_exception. An error raised outside a view (the session or user middleware
reading the database, say) is turned into a 500 by Django before any outer middleware sees it; the
got_request_exception signal marks the request then, and __call__, outermost, swaps that 500 for the 503.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.outages import unavailable_dependency

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
_MARK = "_unavailable_dependency"


def service_unavailable(dependency: str) -> JsonResponse:
    response = JsonResponse(
        {"error": f"the {dependency} is unavailable; try again shortly", "unavailable": dependency}, status=503
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _mark_request(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    exc = sys.exc_info()[1]
    dependency = unavailable_dependency(exc) if exc else None
    if request is not None and dependency:
        setattr(request, _MARK, dependency)


got_request_exception.connect(_mark_request, dispatch_uid="config.middleware.mark_unavailable_dependency")


class DependencyUnavailableMiddleware:
    """First in MIDDLEWARE, so that it is the last to see the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        dependency = getattr(request, _MARK, None)
        return service_unavailable(dependency) if dependency else response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        dependency = unavailable_dependency(exc)
        if dependency is None:
            return None
        logger.warning("%s %s: 503, the %s is unavailable: %r", request.method, request.path, dependency, exc)
        return service_unavailable(dependency)
