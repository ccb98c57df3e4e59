"""The gevent worker's connection pool (celery_runtime.postgres_pool), against real Postgres, Redis and workers.

Each test starts a `celery worker -P gevent` of its own with a small pool, on a queue of its own, so the limits
are reached with a few tasks: the pool never holds more than its size, a wait for a free connection ends in a
retry rather than a hang, a connection broken while idle is replaced, and a killed task gives its slot back.
"""

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

from config.celery_app import app as celery_app
from diagnostics.models import ProbeRecord
from diagnostics.tasks import (
    database_fanout_task,
    database_sleep_insert_task,
    probe_insert_task,
    probe_roundtrip_task,
    runtime_report_task,
)
from tests.worker.conftest import connection_count, start_gevent_worker, wait_for_worker, wait_until

pytestmark = pytest.mark.worker

APPLICATION_NAME = "pool-test-worker"


@contextmanager
def pooled_worker(
    *, pool_size: int, pool_timeout: float, concurrency: int, celery_pool: str = "gevent", loglevel: str = "INFO"
) -> Iterator[tuple[str, list[str]]]:
    """A worker with a pool of `pool_size`; yields its queue, and its output (filled in once it has stopped)."""
    suffix = uuid.uuid4().hex[:8]
    queue, nodename = f"pool-{suffix}", f"pool-{suffix}@test"
    environment = {
        "DJANGO_DB_POOL_SIZE": str(pool_size),
        "DJANGO_DB_POOL_TIMEOUT": str(pool_timeout),
        "DJANGO_DB_APPLICATION_NAME": APPLICATION_NAME,
        "DJANGO_CONN_MAX_AGE": "0",
    }
    process = start_gevent_worker(
        queue, nodename, concurrency=concurrency, environment=environment, pool=celery_pool, loglevel=loglevel
    )
    output: list[str] = []
    try:
        wait_for_worker(nodename)
        yield queue, output
    finally:
        process.terminate()
        try:
            output.append(process.communicate(timeout=30)[0])
        except subprocess.TimeoutExpired:
            process.kill()
            output.append(process.communicate()[0])
        celery_app.control.purge()


def pool_connections() -> int:
    return connection_count(APPLICATION_NAME)


def keys_written(prefix: str) -> int:
    return ProbeRecord.objects.filter(key__startswith=prefix).count()


def test_tasks_beyond_the_pool_wait_for_a_connection_then_retry_and_none_is_lost(worker: dict[str, Any]) -> None:
    """Six tasks that each hold a connection for 1.5 s, on a pool of 2 that makes a task wait 1 s at most."""
    prefix = f"pool-wait-{uuid.uuid4().hex[:8]}"
    with pooled_worker(pool_size=2, pool_timeout=1, concurrency=6) as (queue, output):
        samples: list[int] = []
        for index in range(6):
            database_sleep_insert_task.apply_async((1.5, f"{prefix}-{index}"), queue=queue)
        deadline = time.monotonic() + 60
        while keys_written(prefix) < 6:
            samples.append(pool_connections())
            assert time.monotonic() < deadline, f"{keys_written(prefix)} of 6 tasks written in 60 s"
            time.sleep(0.02)
        assert max(samples) == 2, f"peak connections {max(samples)} with a pool of 2"
    log = output[0]
    assert "all 2 connections of this worker's pool (DJANGO_DB_POOL_SIZE) stayed in use for 1s" in log, log
    assert "retry 1 of 12" in log, log
    assert keys_written(prefix) == 6


def test_a_pooled_connection_broken_while_idle_is_replaced_without_a_retry(worker: dict[str, Any]) -> None:
    prefix = f"pool-broken-{uuid.uuid4().hex[:8]}"
    with pooled_worker(pool_size=2, pool_timeout=5, concurrency=4) as (queue, output):
        first = [probe_insert_task.apply_async((f"{prefix}-a{index}",), queue=queue) for index in range(4)]
        assert all(result.get(timeout=20) > 0 for result in first)
        wait_until(lambda: pool_connections() == 2, timeout=5, message="the pool did not keep its connections")
        # What a Postgres restart does to every idle connection of the pool.
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                [APPLICATION_NAME],
            )
            assert cursor.fetchone()[0] == 2
        wait_until(lambda: pool_connections() == 0, timeout=5, message="the connections were not terminated")
        after = [probe_insert_task.apply_async((f"{prefix}-b{index}",), queue=queue) for index in range(4)]
        assert all(result.get(timeout=20) > 0 for result in after)
        assert pool_connections() <= 2
    log = output[0]
    assert "dropped a pooled database connection that no longer works" in log, log
    assert "the database is unavailable" not in log, log
    assert keys_written(prefix) == 8


def test_a_task_killed_by_its_time_limit_or_revoked_gives_its_connection_back(worker: dict[str, Any]) -> None:
    """A pool of one: if a killed task kept its slot, the next task would wait out the pool timeout and retry."""
    prefix = f"pool-killed-{uuid.uuid4().hex[:8]}"

    def long_query_running() -> bool:
        return connection_count(APPLICATION_NAME, running="SELECT pg_sleep(30%") == 1

    with pooled_worker(pool_size=1, pool_timeout=20, concurrency=2) as (queue, output):
        database_sleep_insert_task.apply_async((30, f"{prefix}-timed-out"), queue=queue, time_limit=1)
        wait_until(long_query_running, timeout=10, message="the task did not start its query")
        assert probe_insert_task.apply_async((f"{prefix}-after-limit",), queue=queue).get(timeout=10) > 0

        revoked = database_sleep_insert_task.apply_async((30, f"{prefix}-revoked"), queue=queue)
        wait_until(long_query_running, timeout=10, message="the task did not start its query")
        celery_app.control.revoke(revoked.id, terminate=True)
        assert probe_insert_task.apply_async((f"{prefix}-after-revoke",), queue=queue).get(timeout=10) > 0
        wait_until(lambda: not long_query_running(), timeout=5, message="the killed tasks' queries still run")
    log = output[0]
    assert "Hard time limit (1s) exceeded" in log, log
    assert "Terminating" in log, log
    assert "stayed in use" not in log, log
    assert not ProbeRecord.objects.filter(key__in=[f"{prefix}-timed-out", f"{prefix}-revoked"]).exists()


def test_failed_tasks_give_their_connections_back(worker: dict[str, Any]) -> None:
    """Three times the pool's size in tasks that fail on a duplicate key, then one that must find a connection."""
    prefix = f"pool-failed-{uuid.uuid4().hex[:8]}"
    ProbeRecord.objects.create(key=f"{prefix}-taken")
    with pooled_worker(pool_size=2, pool_timeout=3, concurrency=6) as (queue, output):
        failures = [probe_insert_task.apply_async((f"{prefix}-taken",), queue=queue) for _ in range(6)]
        for failure in failures:
            with pytest.raises(Exception, match="duplicate key"):
                failure.get(timeout=20)
        assert probe_insert_task.apply_async((f"{prefix}-after",), queue=queue).get(timeout=10) > 0
        assert pool_connections() <= 2
    assert "stayed in use" not in output[0], output[0]


def test_greenlets_a_task_spawns_give_their_connections_back_when_they_end(worker: dict[str, Any]) -> None:
    """Celery closes the connections of the task's own greenlet only. Three fan-outs of 6 greenlets on a pool of 2:
    a slot kept by an ended greenlet would leave the next ones waiting until the pool gives up."""
    prefix = f"pool-fanout-{uuid.uuid4().hex[:8]}"
    with pooled_worker(pool_size=2, pool_timeout=3, concurrency=4) as (queue, output):
        for round_ in range(3):
            assert database_fanout_task.apply_async((6, f"{prefix}-{round_}"), queue=queue).get(timeout=30) == 6

        def pool_is_whole() -> bool:
            return runtime_report_task.apply_async(queue=queue).get(timeout=10)["database_pool_free_slots"] == 2

        wait_until(pool_is_whole, timeout=5, message="the pool did not get its 2 slots back")
        assert pool_connections() <= 2
    assert "stayed in use" not in output[0], output[0]
    assert keys_written(prefix) == 18


@pytest.mark.parametrize("celery_pool", ["prefork", "threads", "solo"])
def test_the_worker_services_settings_on_any_celery_pool_give_each_task_its_own_session(
    worker: dict[str, Any], celery_pool: str
) -> None:
    """The worker service's settings (a pool of 20 connections) with `-P prefork -c 4`, `-P threads` or `-P solo`:
    the connection pool is for gevent's greenlets, so it is not used, and says so; no connection is shared
    between processes or threads, so each of 400 short-query tasks reads back its own row."""
    prefix = f"pool-{celery_pool}-{uuid.uuid4().hex[:8]}"
    with pooled_worker(pool_size=20, pool_timeout=5, concurrency=4, celery_pool=celery_pool, loglevel="WARNING") as (
        queue,
        output,
    ):
        results = [probe_roundtrip_task.apply_async((f"{prefix}-{index}",), queue=queue) for index in range(400)]
        reports: list[dict[str, Any]] = [result.get(timeout=60) for result in results]
        assert runtime_report_task.apply_async(queue=queue).get(timeout=10)["database_pool_free_slots"] is None
    wrong = [(index, report["key"]) for index, report in enumerate(reports) if report["key"] != f"{prefix}-{index}"]
    assert not wrong, f"{len(wrong)} of 400 tasks read another task's row, e.g. {wrong[:3]}"
    sessions: dict[int, set[int]] = {}
    for report in reports:
        sessions.setdefault(report["backend"], set()).add(report["pid"])
    shared = {backend: pids for backend, pids in sessions.items() if len(pids) > 1}
    assert not shared, f"Postgres sessions used by several worker processes: {shared}"
    assert keys_written(prefix) == 400
    log = output[0]
    assert "DJANGO_DB_POOL_SIZE=20 is not used" in log, log
    assert "Traceback" not in log, log
