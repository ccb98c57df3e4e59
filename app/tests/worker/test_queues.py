"""A worker consuming two queues serves both at once: a task on the second queue of an idle worker does not wait
for the idle wait on the first to time out (1 s). Timed here only against that timeout; `make bench` has the
figures."""

import statistics
import time
import uuid
from functools import partial

import pytest
import redis
from django.conf import settings

from config.celery_app import app as celery_app
from diagnostics.tasks import noop_task
from tests.worker.conftest import start_gevent_worker, wait_until

pytestmark = pytest.mark.worker


def test_an_idle_worker_takes_a_task_from_any_of_its_queues_before_its_wait_times_out() -> None:
    suffix = uuid.uuid4().hex[:8]
    first, second, report = f"first-{suffix}", f"second-{suffix}", f"queues-report-{suffix}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)
    nodename = f"queues-{suffix}@test"
    process = start_gevent_worker(f"{first},{second}", nodename, concurrency=4, environment={})
    try:
        ping = celery_app.control.ping
        wait_until(lambda: ping(destination=[nodename], timeout=0.5), timeout=60, message="the worker did not start")
        waits: dict[str, list[float]] = {first: [], second: []}

        def ran_more_than(count: int) -> bool:
            return int(broker.llen(report)) > count

        for index in range(20):
            # The same queue again and again: after each take kombu's cycle puts the other queue first, where the
            # idle wait watches.
            queue = first if index < 10 else second
            time.sleep(0.3)  # idle: the worker waits again
            noop_task.apply_async((report, time.time()), queue=queue)
            wait_until(partial(ran_more_than, index), timeout=5, message=f"task {index} did not run")
            sent_at, done_at = map(float, str(broker.lindex(report, index)).split())
            waits[queue].append(done_at - sent_at)
        medians = {queue: statistics.median(values) for queue, values in waits.items()}
        # The idle wait times out after 1 s: a queue served only then would show a median near half of it or more.
        assert medians[second] < 0.25, medians
        assert medians[first] < 0.25, medians
    finally:
        process.kill()
        process.communicate()
        broker.delete(first, second, report)
