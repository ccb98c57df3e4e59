"""Nothing accepted is lost on the gevent worker: a SIGKILLed worker's messages come back through the sweep within
the visibility timeout plus one sweep period (and a live worker's are not handed out early), and a task whose
connection Postgres drops is retried. Real `celery worker -P gevent` processes on a queue of their own."""

import os
import signal
import subprocess
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connections

from config.celery_app import app as celery_app
from diagnostics.models import ProbeRecord
from diagnostics.tasks import database_sleep_insert_task
from tests.worker.conftest import connection_count, wait_until

pytestmark = pytest.mark.worker

VISIBILITY_TIMEOUT = 4
SWEEP_INTERVAL = 1


def start_worker(queue: str, nodename: str, application_name: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "CELERY_BROKER_TRANSPORT_OPTIONS": (
            f'{{"visibility_timeout": {VISIBILITY_TIMEOUT}, "unacked_restore_interval": {SWEEP_INTERVAL}}}'
        ),
        "DJANGO_DB_APPLICATION_NAME": application_name,
    }
    command = ["celery", "-A", "config.celery_app", "worker", "-P", "gevent", "-c", "4", "-Q", queue, "-n", nodename]
    command += ["--without-mingle", "--without-gossip", "--loglevel", "INFO"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(
        lambda: celery_app.control.ping(destination=[nodename], timeout=0.5),
        timeout=60,
        message=f"worker {nodename} did not start",
    )
    return process


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.kill()
    return process.communicate()[0]


def test_a_killed_workers_tasks_come_back_within_the_visibility_timeout_and_run_once(worker: dict[str, Any]) -> None:
    suffix = uuid.uuid4().hex[:8]
    queue = f"redelivery-{suffix}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    report = f"redelivery-report-{suffix}"
    doomed = start_worker(queue, f"doomed-{suffix}@test", f"doomed-{suffix}")
    survivor = None
    try:
        keys = [f"redelivered-{suffix}-{index}" for index in range(6)]
        for key in keys:  # 4 running, 2 prefetched: all taken by the doomed worker
            database_sleep_insert_task.apply_async((3, key, report), queue=queue)
        wait_until(
            lambda: connection_count(f"doomed-{suffix}", running="SELECT pg_sleep%") == 4,
            timeout=10,
            message="the doomed worker did not start its tasks",
        )
        assert broker.llen(queue) == 0, "the doomed worker left messages in the queue"
        doomed.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        stop(doomed)
        survivor = start_worker(queue, f"survivor-{suffix}@test", f"survivor-{suffix}")
        wait_until(
            lambda: ProbeRecord.objects.filter(key__in=keys).count() == len(keys),
            timeout=40,
            message="the killed worker's tasks were not redelivered",
        )
        took = time.monotonic() - killed_at
        # Visibility timeout + sweep period + a task of 3 s (twice: 4 greenlets for 6 tasks) + start-up.
        assert took < VISIBILITY_TIMEOUT + SWEEP_INTERVAL + 6 + 15, f"redelivered after {took:.1f}s"
        time.sleep(VISIBILITY_TIMEOUT + 2 * SWEEP_INTERVAL)  # a live worker's task is never handed out twice
        assert broker.llen(report) == len(keys), "a task ran more than once"
        assert not [value for value in broker.hvals("unacked") if queue.encode() in value], "left unacknowledged"
    finally:
        stop(doomed)
        output = stop(survivor) if survivor else ""
        broker.delete(queue, report)
        connections.close_all()
    assert "redelivery sweep: " in output


def test_a_task_whose_connection_postgres_drops_is_retried_not_lost(worker: dict[str, Any]) -> None:
    key = f"dropped-{uuid.uuid4().hex[:8]}"
    database_sleep_insert_task.delay(5, key)
    wait_until(
        lambda: connection_count(running="SELECT pg_sleep(5%") == 1, timeout=10, message="the task did not start"
    )
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND query LIKE %s",
            ["test-worker", "SELECT pg_sleep(5%"],
        )
        assert cursor.fetchone()[0] == 1
    wait_until(
        lambda: ProbeRecord.objects.filter(key=key).exists(), timeout=20, message="the task was dropped, not retried"
    )
