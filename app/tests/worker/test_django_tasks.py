"""Django's Tasks framework (`@task`, `.enqueue()`) on the real gevent worker (celery_runtime.django_tasks): results
read back with Django's API, failures with their exception, retries and attempts, `run_after`, `queue_name`,
`priority` on Redis, async functions, and sending on commit. Runs are counted in Redis lists, not rows."""

import contextlib
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import transaction
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone
from django_celery_results.models import TaskResult as ResultRow

from celery_runtime.retries import RetryingTask
from config.celery_app import app as celery_app
from diagnostics.tasks import (
    django_async_sleep_task,
    django_attempt_task,
    django_failing_task,
    django_noop_task,
    django_run_task,
)
from tests.worker.conftest import start_gevent_worker, wait_for_worker, wait_until

pytestmark = pytest.mark.worker


def finished(result: TaskResult, *, timeout: float = 15) -> TaskResult:
    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(done, timeout=timeout, message=f"task {result.id} did not finish (status {result.status})")
    return result


def status_now(result: TaskResult) -> TaskResultStatus:
    result.refresh()
    return result.status


def runs(broker: redis.Redis, key: str) -> list[str]:
    return [value.decode() for value in broker.lrange(key, 0, -1)]  # type: ignore[union-attr]  # bytes here


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    client.close()


@pytest.fixture
def runs_to(broker: redis.Redis) -> Iterator[str]:
    key = f"django-tasks-runs-{uuid.uuid4().hex[:8]}"
    yield key
    broker.delete(key)


def test_a_task_runs_once_on_the_worker_and_its_result_reads_back(
    worker: dict[str, Any], broker: redis.Redis, runs_to: str
) -> None:
    result = django_run_task.enqueue(runs_to=runs_to, key="first", seconds=1.0)
    assert django_run_task.get_result(result.id).status == TaskResultStatus.READY  # readable at once
    wait_until(lambda: status_now(result) == TaskResultStatus.RUNNING, timeout=10, message="never RUNNING")
    finished(result)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "first"
    assert runs(broker, runs_to) == ["first"]
    assert result.enqueued_at
    assert result.started_at
    assert result.finished_at
    assert result.enqueued_at <= result.started_at < result.finished_at
    assert result.finished_at - result.started_at >= timedelta(seconds=1)
    assert result.attempts == 1
    [worker_id] = result.worker_ids
    assert worker_id.startswith("celery@"), worker_id  # the test worker's node name
    read = django_run_task.get_result(result.id)
    assert (read.status, read.return_value, read.kwargs) == (result.status, "first", result.kwargs)
    # Stored as the project's Celery results are, under the function's module path (Flower's name too).
    row = ResultRow.objects.get(task_id=result.id)
    assert (row.status, row.task_name) == ("SUCCESS", "diagnostics.tasks.django_run_task")


def test_the_worker_knows_each_function_as_a_task_with_the_projects_base() -> None:
    registered: Any = celery_app.control.inspect(timeout=5).registered() or {}
    names = {name for names in registered.values() for name in names}
    assert "diagnostics.tasks.django_run_task" in names, names
    assert isinstance(celery_app.tasks["diagnostics.tasks.django_run_task"], RetryingTask)


def test_a_failure_keeps_the_exception_class_and_traceback(worker: dict[str, Any]) -> None:
    message = f"boom-{uuid.uuid4().hex[:8]}"
    result = finished(django_failing_task.enqueue(message=message))
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert message in error.traceback
    assert "django_failing_task" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018 - the property raises


@pytest.mark.django_db
def test_an_unknown_id_is_no_result() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        django_run_task.get_result(str(uuid.uuid4()))


def test_a_transient_database_error_is_retried_and_the_context_counts_the_attempts(worker: dict[str, Any]) -> None:
    result = finished(django_attempt_task.enqueue(transient_failures=1))
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value == 2  # TaskContext.attempt on the retry
    assert result.attempts == 2
    assert len(result.worker_ids) == 2


def test_run_after_defers_the_task_to_that_time_and_it_runs_once(
    worker: dict[str, Any], broker: redis.Redis, runs_to: str
) -> None:
    run_after = timezone.now() + timedelta(seconds=3)
    result = django_noop_task.using(run_after=run_after).enqueue(report_to=runs_to, sent_at=run_after.timestamp())
    time.sleep(2)
    assert runs(broker, runs_to) == [], "ran before run_after"
    assert django_noop_task.get_result(result.id).status == TaskResultStatus.READY
    wait_until(lambda: runs(broker, runs_to), timeout=10, message="the deferred task did not run")
    time.sleep(3)  # time for a second run, if any
    [run] = runs(broker, runs_to)
    due, done = map(float, run.split())
    assert done >= due, f"ran {due - done:.3f}s early"
    assert finished(result).status == TaskResultStatus.SUCCESSFUL


def test_a_task_enqueued_in_a_transaction_is_sent_when_it_commits(
    worker: dict[str, Any], broker: redis.Redis, runs_to: str
) -> None:
    with transaction.atomic():
        committed = django_run_task.enqueue(runs_to=runs_to, key="committed")
        time.sleep(1.5)  # the worker would have run it by now, had it been sent
        assert runs(broker, runs_to) == [], "sent before the transaction committed"
    rolled_back: list[TaskResult] = []

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            rolled_back.append(django_run_task.enqueue(runs_to=runs_to, key="rolled back"))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert finished(committed).return_value == "committed"
    time.sleep(1)
    assert runs(broker, runs_to) == ["committed"]
    with pytest.raises(TaskResultDoesNotExist):
        django_run_task.get_result(rolled_back[0].id)


def test_async_functions_run_without_blocking_the_gevent_hub(
    worker: dict[str, Any], broker: redis.Redis, runs_to: str
) -> None:
    started = time.monotonic()
    sleepers = [django_async_sleep_task.enqueue(seconds=2.0, runs_to=runs_to, key=f"async-{i}") for i in range(10)]
    wait_until(
        lambda: ResultRow.objects.filter(task_id__in=[r.id for r in sleepers], status="STARTED").count() == 10,
        timeout=5,
        message="the async tasks did not all start",
    )
    quick = finished(django_run_task.enqueue(runs_to=runs_to, key="sync"), timeout=5)
    assert quick.finished_at
    assert quick.enqueued_at
    assert runs(broker, runs_to)[0] == "sync", "a sync task waited for the async ones"
    for sleeper in sleepers:
        assert finished(sleeper).return_value.startswith("async-")
    took = time.monotonic() - started
    assert took < 6, f"10 async tasks of 2 s each took {took:.1f}s: they ran one at a time"


# --- A worker of the test's own, on a queue of its own: one greenlet, one message at a time (no prefetch), so
# the order in which it takes waiting messages is the order they run.


@pytest.fixture(scope="module")
def single_worker() -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    queue, nodename = f"django-tasks-{suffix}", f"django-tasks-{suffix}@test"
    process = start_gevent_worker(
        queue, nodename, concurrency=1, environment={"CELERY_WORKER_PREFETCH_MULTIPLIER": "1"}
    )
    try:
        wait_for_worker(nodename)
        yield queue, nodename
    finally:
        process.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=10)
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


def test_queue_name_sends_the_task_to_that_queues_worker(
    worker: dict[str, Any], single_worker: tuple[str, str], runs_to: str
) -> None:
    queue, nodename = single_worker
    routed = finished(django_run_task.using(queue_name=queue).enqueue(runs_to=runs_to, key="routed"))
    assert routed.worker_ids == [nodename]
    default = finished(django_run_task.enqueue(runs_to=runs_to, key="default"))
    assert default.worker_ids != [nodename]
    assert len(default.worker_ids) == 1


def test_a_higher_priority_runs_first_on_redis(
    worker: dict[str, Any], single_worker: tuple[str, str], broker: redis.Redis, runs_to: str
) -> None:
    queue, _ = single_worker
    on_queue = django_run_task.using(queue_name=queue)
    blocker = on_queue.enqueue(runs_to=runs_to, key="blocker", seconds=1.5)
    wait_until(lambda: runs(broker, runs_to) == ["blocker"], timeout=10, message="the blocker did not start")
    # The worker is busy and takes nothing more: these wait in Redis, sent lowest first.
    sent = [
        on_queue.using(priority=priority).enqueue(runs_to=runs_to, key=str(priority))
        for priority in (-100, -10, 0, 10, 100)
    ]
    assert runs(broker, runs_to) == ["blocker"], "the worker took a message while busy: the order proves nothing"
    for result in [blocker, *sent]:
        finished(result)
    # Redis keeps four levels (celery_runtime.django_tasks.kombu_priority): 10 and 100 share the first, in the
    # order sent.
    assert runs(broker, runs_to) == ["blocker", "10", "100", "0", "-10", "-100"]


def test_an_idle_worker_takes_a_default_priority_task_at_once(
    worker: dict[str, Any], broker: redis.Redis, runs_to: str
) -> None:
    """Django's default priority waits in the queue's second Redis list (kombu_priority): an idle worker's wait on
    the first list must not leave it there until the wait times out (1 s)."""

    def ran_more_than(count: int) -> bool:
        return int(broker.llen(runs_to)) > count

    waits = []
    for index in range(10):
        time.sleep(0.3)  # idle: the worker waits again
        django_noop_task.enqueue(report_to=runs_to, sent_at=time.time())
        wait_until(partial(ran_more_than, index), timeout=5, message=f"task {index} did not run")
        sent_at, done_at = map(float, runs(broker, runs_to)[index].split())
        waits.append(done_at - sent_at)
    assert statistics.median(waits) < 0.25, waits


def test_a_killed_workers_task_comes_back_and_counts_a_second_attempt(worker: dict[str, Any], runs_to: str) -> None:
    """The transport's redelivery, for a django.tasks task: a second worker runs it again, and its result names
    both workers (attempts 2)."""
    suffix = uuid.uuid4().hex[:8]
    queue, doomed, survivor = f"django-tasks-redelivery-{suffix}", f"doomed-{suffix}@test", f"survivor-{suffix}@test"
    environment = {"CELERY_BROKER_TRANSPORT_OPTIONS": '{"worker_liveness_timeout": 3, "unacked_restore_interval": 1}'}
    processes = []

    def start(nodename: str) -> None:
        processes.append(start_gevent_worker(queue, nodename, concurrency=2, environment=environment))
        ping = celery_app.control.ping
        wait_until(lambda: ping(destination=[nodename], timeout=0.5), timeout=60, message=f"{nodename} did not start")

    def attempts_now(result: TaskResult) -> int:
        result.refresh()
        return result.attempts

    try:
        start(doomed)
        result = django_run_task.using(queue_name=queue).enqueue(runs_to=runs_to, key="run", seconds=30)
        wait_until(lambda: status_now(result) == TaskResultStatus.RUNNING, timeout=10, message="never started")
        processes[0].send_signal(signal.SIGKILL)
        processes[0].communicate()
        start(survivor)
        wait_until(lambda: attempts_now(result) == 2, timeout=30, message="the task never came back")
        assert result.worker_ids == [doomed, survivor]
        assert result.status == TaskResultStatus.RUNNING  # the second attempt runs (30 s); not waited for
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


def test_a_stopped_worker_finishes_a_short_task_and_hands_a_long_one_to_the_next(
    worker: dict[str, Any], broker: redis.Redis, runs_to: str
) -> None:
    """Soft shutdown (SIGTERM remapped to SIGQUIT, as in production) for django.tasks tasks: the short one ends
    within the timeout, the long one goes back to the queue and the next worker runs it to the end (attempt 2)."""
    suffix = uuid.uuid4().hex[:8]
    queue, first, second = f"django-tasks-stop-{suffix}", f"first-{suffix}@test", f"second-{suffix}@test"
    environment = {"REMAP_SIGTERM": "SIGQUIT", "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "2"}
    processes = []

    def start(nodename: str) -> subprocess.Popen[str]:
        processes.append(start_gevent_worker(queue, nodename, concurrency=2, environment=environment))
        ping = celery_app.control.ping
        wait_until(lambda: ping(destination=[nodename], timeout=0.5), timeout=60, message=f"{nodename} did not start")
        return processes[-1]

    try:
        process = start(first)
        on_queue = django_run_task.using(queue_name=queue)
        short = on_queue.enqueue(runs_to=runs_to, key="short", seconds=1)
        long = on_queue.enqueue(runs_to=runs_to, key="long", seconds=5)
        wait_until(lambda: sorted(runs(broker, runs_to)) == ["long", "short"], timeout=10, message="not both started")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert f"[{long.id}] goes back to the queue" in output, output
        assert finished(short, timeout=1).return_value == "short"
        start(second)
        assert finished(long, timeout=20).return_value == "long"
        assert long.worker_ids == [first, second]
        assert sorted(runs(broker, runs_to)) == ["long", "long", "short"]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
        broker.delete(queue)
