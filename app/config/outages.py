"""Which errors mean that Postgres or Redis is unavailable for now, rather than a bug or bad data.

The web answers them with 503 and Retry-After (config.middleware); the worker retries a task that met one
(celery_runtime.retries). Both ask here, so they agree on what "unavailable" means."""

from __future__ import annotations

import kombu.exceptions
import psycopg2
import psycopg2.errors
import redis.exceptions
from django import db

# Raised when the server is gone, restarting or refusing connections, or the connection broke mid-query;
# psycopg2's own classes for code that talks to it directly, Django's wrappers for the ORM.
_DATABASE_CONNECTION_ERRORS = (
    db.OperationalError,
    db.InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
)
# OperationalErrors that a retry does not mend: the statement ran into statement_timeout (or was cancelled
# by the task's own time limit), so running it again would only take as long again.
_NOT_TRANSIENT = (psycopg2.errors.QueryCanceled,)

_BROKER_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def is_transient_database_error(exc: BaseException) -> bool:
    if not isinstance(exc, _DATABASE_CONNECTION_ERRORS):
        return False
    cause = exc.__cause__ if isinstance(exc, db.Error) else exc  # Django wraps psycopg2's error
    return not isinstance(cause, _NOT_TRANSIENT)


def unavailable_dependency(exc: BaseException) -> str | None:
    """'database' or 'broker' when exc says that one cannot be reached now; None for any other error."""
    if is_transient_database_error(exc):
        return "database"
    if isinstance(exc, _BROKER_ERRORS):
        return "broker"
    return None


def describe(exc: BaseException) -> str:
    """The error's message on one line (psycopg2's span several), or its class name when it has none."""
    return " ".join(str(exc).split()) or exc.__class__.__name__
