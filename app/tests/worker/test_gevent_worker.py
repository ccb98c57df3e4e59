"""The worker, as deployed: gevent pool, psycopg2 made cooperative, tasks sharing a bounded pool of connections."""

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from django.db import IntegrityError
from django_celery_results.models import TaskResult

from diagnostics.models import ProbeRecord
from diagnostics.tasks import (
    database_insert_select_task,
    database_sleep_insert_task,
    probe_insert_task,
    runtime_report_task,
)
from tests.worker.conftest import broker_client, connection_count, wait_until

pytestmark = pytest.mark.worker

CONCURRENCY = 50
POOL_SIZE = 10  # DJANGO_DB_POOL_SIZE of the test-worker service


def test_the_worker_runs_the_gevent_pool_at_the_concurrency_from_the_environment(worker: dict[str, Any]) -> None:
    assert worker["pool"]["implementation"] == "celery.concurrency.gevent:TaskPool"
    assert worker["pool"]["max-concurrency"] == CONCURRENCY


def test_the_orm_setup_inside_the_worker_is_the_gevent_safe_one(worker: dict[str, Any]) -> None:
    report = runtime_report_task.delay().get(timeout=10)
    assert report["gevent_patched"] is True
    assert report["psycopg2_wait_callback"] == "celery_runtime.green.wait_cancelling_on_interrupt"
    assert report["connections_greenlet_local"] is True
    assert report["conn_max_age"] == 0
    assert report["database_engine"] == "celery_runtime.postgres_pool"
    assert report["database_pool_size"] == POOL_SIZE


def test_a_thousand_orm_writes_at_concurrency_50_give_exactly_a_thousand_rows(
    worker: dict[str, Any], connection_sampler: Any
) -> None:
    keys = [f"burst-{uuid.uuid4().hex}" for _ in range(1000)]
    runs = f"runs-{uuid.uuid4().hex}"  # each run pushes its key here as it starts: runs are counted, not rows
    with connection_sampler() as sampler:
        for key in keys:
            database_insert_select_task.delay(key, runs_to=runs)
        wait_until(lambda: ProbeRecord.objects.count() >= 1000, timeout=90, message="the burst did not finish")
    time.sleep(0.5)  # a redelivered or duplicated task would have started again by now
    assert ProbeRecord.objects.count() == 1000
    assert set(ProbeRecord.objects.values_list("key", flat=True)) == set(keys)
    ran = Counter(str(key, "utf-8") if isinstance(key, bytes) else key for key in broker_client().lrange(runs, 0, -1))
    assert set(ran) == set(keys)
    twice = {key: count for key, count in ran.items() if count > 1}
    assert not twice, f"{len(twice)} tasks ran more than once, e.g. {list(twice.items())[:3]}"
    assert max(sampler.samples) <= POOL_SIZE, f"worker held {max(sampler.samples)} connections"
    # Kept open for the next tasks, within the pool's size.
    assert connection_count() <= POOL_SIZE


def test_database_waits_are_cooperative(worker: dict[str, Any], connection_sampler: Any) -> None:
    """50 tasks that each sleep 0.5 s in Postgres: 25 s if psycopg2 blocked the hub, about 2.5 s if it yields
    (five rounds through the pool's 10 connections)."""
    started = time.monotonic()
    with connection_sampler() as sampler:
        for index in range(50):
            database_sleep_insert_task.delay(0.5, f"cooperative-{index}")
        wait_until(lambda: ProbeRecord.objects.count() >= 50, timeout=30, message="pg_sleep tasks did not finish")
    elapsed = time.monotonic() - started
    assert elapsed < 8, f"50 x pg_sleep(0.5) took {elapsed:.1f}s: the database driver is blocking the worker"
    assert max(sampler.samples) <= POOL_SIZE
    assert max(sampler.samples) == POOL_SIZE, "the sleeps did not overlap"


def test_a_failed_task_rolls_back_and_the_next_task_works(worker: dict[str, Any]) -> None:
    assert probe_insert_task.delay("unique-key").get(timeout=10) > 0
    duplicate = probe_insert_task.delay("unique-key")
    with pytest.raises(IntegrityError):
        duplicate.get(timeout=10)
    stored = TaskResult.objects.get(task_id=duplicate.id)
    assert stored.status == "FAILURE"
    assert "IntegrityError" in stored.result
    # Every greenlet that runs next gets a clean connection: no "current transaction is aborted".
    results = [probe_insert_task.delay(f"after-failure-{index}") for index in range(2 * CONCURRENCY)]
    assert all(result.get(timeout=20) > 0 for result in results)
    assert ProbeRecord.objects.count() == 1 + 2 * CONCURRENCY


def test_a_hard_time_limit_stops_the_query_in_postgres_too(worker: dict[str, Any]) -> None:
    """gevent's time limit ends the greenlet mid-query; the wait callback then cancels the query on the server,
    which would otherwise run on (holding its locks) until statement_timeout."""

    def long_queries_running() -> int:
        return connection_count(running="SELECT pg_sleep(30%")

    key = f"time-limit-{uuid.uuid4().hex}"
    database_sleep_insert_task.apply_async((30, key), time_limit=2)
    wait_until(lambda: long_queries_running() == 1, timeout=10, message="the task did not start its query")
    wait_until(lambda: long_queries_running() == 0, timeout=8, message="the query ran on after the time limit")
    assert not ProbeRecord.objects.filter(key=key).exists()
