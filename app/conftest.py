"""Fixtures for every test of the project, the example apps' included (app/<app>/tests/)."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config.celery_app import app as celery_app


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The test database is kept between runs (the test worker uses it too): start from empty tables."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def celery_eager() -> Iterator[None]:
    """Runs tasks in the test process: for the logic around a task, not for the worker itself."""
    eager = {"task_always_eager": True, "task_eager_propagates": True}
    celery_app.conf.update(eager)
    try:
        yield
    finally:
        celery_app.conf.update(dict.fromkeys(eager, False))


@pytest.fixture
def json_post(client: Any) -> Callable[..., Any]:
    def post(url: str, payload: Any) -> Any:
        return client.post(url, payload, content_type="application/json")

    return post


@pytest.fixture(scope="session")
def worker_stats() -> dict[str, Any]:
    """The test worker's own report of itself; fails the tests at once when no worker is consuming."""
    replies: Any = celery_app.control.inspect(timeout=5).stats() or {}
    if not replies:
        pytest.fail("no Celery worker answered on the test broker: start it with `make test`")
    celery_app.control.purge()  # anything left over from an interrupted run
    return next(iter(replies.values()))


@pytest.fixture
def worker(worker_stats: dict[str, Any], transactional_db: None) -> dict[str, Any]:
    """Committed rows (so the worker sees them), flushed after the test."""
    return worker_stats


def _use_broker(url: str | None) -> None:
    """Points the app's producers at `url` (broker_write_url: CELERY_BROKER_URL in the environment outranks
    broker_url); new producer pools are made from the setting on next use."""
    app: Any = celery_app
    app.conf.update(broker_write_url=url)
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_unreachable() -> Iterator[None]:
    _use_broker("redis://127.0.0.1:1/0")  # nothing listens there: connection refused
    try:
        yield
    finally:
        _use_broker(None)
