"""Postgres or Redis unreachable: the web answers a bounded 503 JSON with Retry-After, and the worker's base task
retries what a retry can mend. The broker fault is real: the Celery app is pointed at a port nobody listens on."""

import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from django import db

from celery_runtime.retries import RetryingTask, transient_retry_countdown
from config.celery_app import app as celery_app
from config.outages import is_transient_database_error, unavailable_dependency
from tests.outages import post_is_refused_with_a_bounded_503


@pytest.mark.django_db(transaction=True)  # delay_on_commit publishes at once, outside a test transaction
@pytest.mark.urls("tests.urls")
def test_enqueueing_with_the_broker_down_is_a_bounded_503_with_retry_after(
    client: Any, broker_unreachable: None
) -> None:
    post_is_refused_with_a_bounded_503(client, "/test/enqueue/", {}, dependency="broker")


@pytest.mark.django_db
def test_health_names_the_broker_when_it_is_down(client: Any, settings: Any) -> None:
    from config import health

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    health._broker.cache_clear()
    try:
        response = client.get("/health/")
    finally:
        health._broker.cache_clear()
    assert response.status_code == 503
    assert response.json()["unavailable"] == ["broker"]
    assert response.json()["database"] == "ok"
    assert response["Retry-After"].isdigit()


def test_connection_errors_are_transient_and_mistakes_are_not() -> None:
    gone = db.OperationalError("server closed the connection unexpectedly")
    assert is_transient_database_error(gone)
    assert is_transient_database_error(db.InterfaceError("connection already closed"))
    assert is_transient_database_error(psycopg2.OperationalError("could not connect"))
    assert unavailable_dependency(gone) == "database"
    timed_out = db.OperationalError("canceling statement due to statement timeout")
    timed_out.__cause__ = psycopg2.errors.QueryCanceled()
    assert not is_transient_database_error(timed_out)
    assert not is_transient_database_error(db.IntegrityError("duplicate key"))
    assert not is_transient_database_error(ValueError("a bug"))
    assert unavailable_dependency(ValueError("a bug")) is None


def retry_schedule(jitter: Callable[[float, float], float], monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The countdowns RetryingTask would wait before each of its retries, with the jitter drawn by `jitter`."""
    monkeypatch.setattr("celery_runtime.retries.random.uniform", jitter)
    return [
        transient_retry_countdown(
            retries,
            first=RetryingTask.transient_first_countdown,
            longest=RetryingTask.transient_longest_countdown,
        )
        for retries in range(RetryingTask.transient_max_retries)
    ]


def test_the_retries_outlast_a_restart_of_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even the shortest schedule the jitter can draw (each countdown at its least) waits over a minute in all,
    so a task retried through a Postgres restart of a minute is not dropped."""
    shortest = retry_schedule(lambda low, high: low, monkeypatch)
    longest = retry_schedule(lambda low, high: high, monkeypatch)
    assert sum(shortest) >= 60, f"the retries may all be spent in {sum(shortest):.1f}s: {shortest}"
    # Doubling, capped: no single wait is long enough to leave a task stuck after the database is back.
    assert longest == sorted(longest), longest
    assert max(longest) <= 15, longest
    assert all(0 < low < high for low, high in zip(shortest, longest, strict=True)), "no jitter"


def test_every_task_of_the_project_has_the_retrying_base() -> None:
    ours = {name: task for name, task in celery_app.tasks.items() if not name.startswith("celery.")}
    assert "diagnostics.tasks.noop_task" in ours
    assert all(isinstance(task, RetryingTask) for task in ours.values()), ours


@pytest.mark.django_db
def test_after_a_failed_connect_the_next_ones_fail_fast_for_a_moment() -> None:
    from django.db import connection

    from config.db.base import FAIL_FAST_SECONDS

    params = connection.get_connection_params()
    with pytest.raises(psycopg2.OperationalError):
        connection.get_new_connection({**params, "port": 1})  # nothing listens there
    started = time.monotonic()
    with pytest.raises(psycopg2.OperationalError, match="not tried again yet"):
        connection.get_new_connection(params)  # Postgres is up, but not tried within the window
    assert time.monotonic() - started < 0.1
    time.sleep(FAIL_FAST_SECONDS)
    connection.get_new_connection(params).close()  # tried again, and it works
