"""A deploy stops the gevent worker as production does (`docker stop`, SIGTERM remapped to SIGQUIT): Celery's
soft shutdown lets the running tasks finish within its timeout and hands the rest back to the queue, with their
queries stopped in Postgres. The worker here is a real `celery worker -P gevent` process on a queue of its own."""

import json
import signal
import subprocess
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings

from diagnostics.models import ProbeRecord
from diagnostics.tasks import database_sleep_insert_task
from tests.worker.conftest import connection_count, start_gevent_worker, wait_for_worker, wait_until

pytestmark = pytest.mark.worker

SOFT_SHUTDOWN_TIMEOUT = 2
APPLICATION_NAME = "soft-shutdown-worker"


def queries_running() -> int:
    return connection_count(APPLICATION_NAME, running="SELECT pg_sleep%")


def start_worker(queue: str, nodename: str) -> subprocess.Popen[str]:
    environment = {
        "REMAP_SIGTERM": "SIGQUIT",
        "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": str(SOFT_SHUTDOWN_TIMEOUT),
        "DJANGO_DB_APPLICATION_NAME": APPLICATION_NAME,
    }
    return start_gevent_worker(queue, nodename, concurrency=2, environment=environment)


def test_a_stopped_worker_finishes_short_tasks_and_requeues_long_ones(worker: dict[str, Any]) -> None:
    suffix = uuid.uuid4().hex[:8]
    queue, nodename = f"soft-shutdown-{suffix}", f"soft-shutdown-{suffix}@test"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    process = start_worker(queue, nodename)
    try:
        wait_for_worker(nodename)
        database_sleep_insert_task.apply_async((1.5, f"short-{suffix}"), queue=queue)
        long_task = database_sleep_insert_task.apply_async((60, f"long-{suffix}"), queue=queue)
        wait_until(lambda: queries_running() == 2, timeout=10, message="the worker did not start both tasks")
        # Concurrency 2 is taken: these wait, the first one taken by the worker (waiting for a free greenlet),
        # the others in Redis.
        waiting_tasks = [
            database_sleep_insert_task.apply_async((60, f"waiting-{suffix}-{index}"), queue=queue) for index in range(4)
        ]
        wait_until(lambda: broker.llen(queue) < 4, timeout=5, message="the worker took none of the waiting tasks")

        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        took = time.monotonic() - stopped_at

        # The short task finished inside the soft shutdown's timeout; the long one did not hold the stop up.
        assert ProbeRecord.objects.filter(key=f"short-{suffix}").exists(), output
        assert not ProbeRecord.objects.filter(key=f"long-{suffix}").exists(), output
        assert took < 30, f"stopping took {took:.1f}s although the soft shutdown lasts {SOFT_SHUTDOWN_TIMEOUT}s"
        assert f"[{long_task.id}] goes back to the queue" in output, output

        # Its message is back in the queue for the next worker, and so are the prefetched ones: nothing is lost,
        # nothing ran twice. (One waiting task may have started when the short one ended, and been requeued.)
        queued = sorted(json.loads(message)["headers"]["id"] for message in broker.lrange(queue, 0, -1))
        assert queued == sorted([long_task.id, *(task.id for task in waiting_tasks)]), output
        assert not ProbeRecord.objects.filter(key__startswith=f"waiting-{suffix}").exists()
        unacked = [value for value in broker.hvals("unacked") if queue.encode() in value]
        assert not unacked, "messages of the queue left unacknowledged in Redis"
        wait_until(lambda: queries_running() == 0, timeout=5, message="the cancelled task's query still runs")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        broker.delete(queue)
