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
