"""Tests that run tasks on the real worker: the test-worker service (gevent pool, concurrency 50), which
shares this session's test database and a Redis database of its own. `make test` starts it."""

import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connections

WORKER_APPLICATION_NAME = "test-worker"


def wait_until(condition: Callable[[], Any], *, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout}s)")
        time.sleep(0.05)


def start_gevent_worker(
    queue: str,
    nodename: str,
    *,
    concurrency: int,
    environment: dict[str, str],
    extra: tuple[str, ...] = (),
    pool: str = "gevent",
    loglevel: str = "INFO",
) -> subprocess.Popen[str]:
    """A real `celery worker -P gevent` (or another `pool`) of the test's own, consuming `queue` only; its output
    is kept for the test, and read when it stops: many tasks at INFO (two lines each) would fill the pipe and
    block the worker, so such a test asks for WARNING."""
    command = ["celery", "-A", "config.celery_app", "worker", "-P", pool, "-c", str(concurrency)]
    command += ["-Q", queue, "-n", nodename, "--without-mingle", "--without-gossip", "--loglevel", loglevel, *extra]
    return subprocess.Popen(
        command, env={**os.environ, **environment}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_worker(nodename: str, *, timeout: float = 60) -> None:
    """Until the worker `nodename` answers a ping (it consumes once it does)."""
    from config.celery_app import app as celery_app

    wait_until(
        lambda: celery_app.control.ping(destination=[nodename], timeout=0.5),
        timeout=timeout,
        message=f"worker {nodename} did not start",
    )


def broker_client() -> redis.Redis:
    """The test broker's Redis, where tasks given `runs_to` count their runs."""
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def connection_count(application_name: str = WORKER_APPLICATION_NAME, *, running: str = "%") -> int:
    """Postgres connections of one process (its application_name), or only those whose query is LIKE `running`."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
            [application_name, running],
        )
        return int(cursor.fetchone()[0])


class ConnectionSampler:
    """Counts the worker's Postgres connections every 20 ms from a thread of its own."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.samples.append(connection_count())
                time.sleep(0.02)
        finally:
            connections.close_all()

    def __enter__(self) -> "ConnectionSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def connection_sampler() -> type[ConnectionSampler]:
    return ConnectionSampler
