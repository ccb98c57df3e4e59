"""GET /health/: the web can serve, reach Postgres and reach Redis. The containers' healthchecks use it.

Each check is bounded (Postgres's connect_timeout, Redis's socket timeouts), so a dependency that is down or
hanging gives a 503 that names it within seconds."""

from functools import cache

import redis
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from celery_runtime.redis_client import broker_client
from config.middleware import RETRY_AFTER_SECONDS


@cache
def _broker() -> redis.Redis:
    return broker_client(socket_connect_timeout=2, socket_timeout=2)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_broker() -> None:
    _broker().ping()


def dependency_status() -> dict[str, str]:
    """For the database and for the broker: "ok", or "error: <exception class>". Never raises."""
    checks = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
            checks[name] = f"error: {exc.__class__.__name__}"
    return checks


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    checks = dependency_status()
    unavailable = [name for name, value in checks.items() if value != "ok"]
    if not unavailable:
        return JsonResponse({"status": "ok", **checks})
    error = f"unavailable: {', '.join(unavailable)}"
    response = JsonResponse({"status": "unhealthy", "error": error, **checks, "unavailable": unavailable}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
