"""A message belongs to the live worker that took it: never handed to another however long it waits or runs,
back in its queue when its worker dies, set aside when it kills its worker again and again or cannot be read.
Real `celery worker -P gevent` processes on queues of their own; every run of every task is counted (each
reports to a Redis list), since a second run of an idempotent task leaves no second row."""

import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from celery_runtime.dead_letters import dead_letter_list
from config.celery_app import app as celery_app
from diagnostics.tasks import noop_task, poison_task, process_exit_task, sleep_task, spin_task
from tests.worker.conftest import start_gevent_worker, wait_for_worker, wait_until

pytestmark = pytest.mark.worker

LIVENESS = 3  # seconds: short, so a test sees the sweep act; and the visibility timeout the old code went by
DEAD_LETTERS = "unacked_dead_letters"


def transport_options(**extra: Any) -> str:
    return json.dumps(
        {"worker_liveness_timeout": LIVENESS, "visibility_timeout": LIVENESS, "unacked_restore_interval": 1, **extra}
    )


def spawn_worker(queue: str, nodename: str, *, concurrency: int = 4, **options: Any) -> subprocess.Popen[str]:
    environment = {"CELERY_BROKER_TRANSPORT_OPTIONS": transport_options(**options)}
    return start_gevent_worker(queue, nodename, concurrency=concurrency, environment=environment)


def start_worker(queue: str, nodename: str, *, concurrency: int = 4, **options: Any) -> subprocess.Popen[str]:
    process = spawn_worker(queue, nodename, concurrency=concurrency, **options)
    wait_until(
        lambda: process.poll() is not None or celery_app.control.ping(destination=[nodename], timeout=0.5),
        timeout=60,
        message=f"worker {nodename} did not start",
    )
    assert process.poll() is None, process.communicate()[0]
    return process


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.communicate()[0] if process.stdout and not process.stdout.closed else ""


def runs(broker: redis.Redis, report: str) -> Counter[int]:
    """How many times each task ran: each reports 'index done_at', the index standing in for sent_at."""
    return Counter(int(float(entry.split()[0])) for entry in broker.lrange(report, 0, -1))


def held_from(broker: redis.Redis, queue: str) -> int:
    """Messages of `queue` recorded as taken and not acknowledged, once the queue itself is empty."""
    return 0 if broker.llen(queue) else sum(f'"routing_key": "{queue}"' in value for value in broker.hvals("unacked"))


@pytest.fixture
def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, decode_responses=True)


@pytest.fixture
def names(broker: redis.Redis) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    queue, report = f"owned-{suffix}", f"owned-report-{suffix}"
    yield queue, report
    broker.delete(queue, report)


def test_countdown_tasks_held_by_live_workers_past_the_liveness_run_once(
    broker: redis.Redis, names: tuple[str, str]
) -> None:
    queue, report = names
    workers = [start_worker(queue, f"countdown-{index}-{queue}@test") for index in range(2)]
    try:
        for index in range(10):
            noop_task.apply_async((report, index), queue=queue, countdown=3 * LIVENESS)
        wait_until(lambda: broker.llen(report) >= 10, timeout=30, message="the countdown tasks did not run")
        time.sleep(LIVENESS + 2)  # a second run, if any, has had the time to happen
        assert runs(broker, report) == Counter(range(10)), f"runs per task: {runs(broker, report)}"
    finally:
        for worker in workers:
            stop(worker)


def test_a_stopped_worker_keeps_the_task_it_finishes_and_what_it_gives_back_runs_once_on_the_next(
    broker: redis.Redis, names: tuple[str, str]
) -> None:
    """A worker stopped (SIGTERM, a warm shutdown) while it runs a task longer than the liveness and holds countdown
    tasks: it finishes the running one, which is no other worker's meanwhile, and gives the countdown ones back as
    its channel closes, for the next worker to run, once each. Its records must go with what it gave back: left
    behind, a later sweep of the stopped worker would hand out again the very messages the next one holds."""
    queue, report = names
    stopped_name, taker_name = f"stopped-{queue}@test", f"taker-{queue}@test"
    stopped = spawn_worker(queue, stopped_name)
    taker = spawn_worker(f"{queue}-idle", taker_name)  # takes from `queue` once the first holds every task
    output = ""
    try:
        for name in (stopped_name, taker_name):
            wait_for_worker(name)
        sleep_task.apply_async((4 * LIVENESS, report, 0), queue=queue)
        for index in range(1, 5):
            noop_task.apply_async((report, index), queue=queue, countdown=6 * LIVENESS)  # due after the close
        wait_until(lambda: held_from(broker, queue) == 5, timeout=5, message="the first worker did not take all")
        celery_app.control.add_consumer(queue, destination=[taker_name], reply=True)
        output = stop(stopped)
        wait_until(lambda: broker.llen(report) >= 5, timeout=30, message="the tasks did not all run")
        time.sleep(LIVENESS + 2)  # a second run, if any, has had the time to happen
        assert runs(broker, report) == Counter(range(5)), f"runs per task: {runs(broker, report)}"
    finally:
        stop(stopped)
        stop(taker)
        broker.delete(f"{queue}-idle")
    assert "Restoring 4 unacknowledged message(s)" in output, output


def test_a_task_acknowledged_before_it_runs_is_not_delivered_again_when_it_ends_its_worker(
    broker: redis.Redis, names: tuple[str, str]
) -> None:
    """`acks_late=False` promises at most once: a task whose body ends its process (a segfault, `os._exit`) must
    not come back. Acks reach Redis in batches, a few milliseconds later: the ack of such a task was lost with
    the process, and the next worker ran it, and died, until it was set aside after three deaths."""
    queue, _report = names
    process_exit_task.apply_async(queue=queue)
    first = spawn_worker(queue, f"ends-{queue}@test")
    next_worker = None
    try:
        assert first.wait(timeout=60) == 70, "the task did not end its worker"
        next_worker = start_worker(queue, f"next-{queue}@test")
        time.sleep(LIVENESS + 3)  # the sweep has found the first worker dead by now
        assert next_worker.poll() is None, "the task ran again and ended the next worker"
        assert broker.llen(queue) == 0
        assert held_from(broker, queue) == 0
    finally:
        stop(first)
        if next_worker is not None:
            stop(next_worker)


def test_a_task_longer_than_the_liveness_runs_once(broker: redis.Redis, names: tuple[str, str]) -> None:
    queue, report = names
    workers = [start_worker(queue, f"long-{index}-{queue}@test") for index in range(2)]
    try:
        for index in range(3):
            sleep_task.apply_async((3 * LIVENESS, report, index), queue=queue)
        wait_until(lambda: broker.llen(report) >= 3, timeout=40, message="the long tasks did not end")
        time.sleep(LIVENESS + 2)
        assert runs(broker, report) == Counter(range(3)), f"runs per task: {runs(broker, report)}"
    finally:
        for worker in workers:
            stop(worker)


def test_a_poison_message_is_set_aside_and_every_other_task_runs_once(
    broker: redis.Redis, names: tuple[str, str]
) -> None:
    """A task that kills its worker process among normal ones: each time the worker dies it is started again, as
    Docker's restart policy does; the poison runs `delivery_limit` (3) times, then waits in the dead letters."""
    queue, report = names
    poison_report = f"{report}-poison"
    poison = poison_task.apply_async((poison_report, 0), queue=queue)
    for index in range(30):
        sleep_task.apply_async((0.2, report, index), queue=queue)
    outputs: list[str] = []
    worker = spawn_worker(queue, f"poisoned-{queue}@test")  # the poison may end it before it answers a ping
    try:
        deadline = time.monotonic() + 90
        while not any(letter.task_id == poison.id for letter in dead_letter_list()):
            assert time.monotonic() < deadline, f"the poison was not set aside; runs: {broker.llen(poison_report)}"
            if worker.poll() is not None:  # it died: start another, as the restart policy would
                outputs.append(stop(worker))
                worker = spawn_worker(queue, f"poisoned-{len(outputs)}-{queue}@test")
            time.sleep(0.2)
        wait_until(lambda: broker.llen(report) >= 30, timeout=30, message="the other tasks did not all run")
        time.sleep(LIVENESS + 2)
        assert runs(broker, report) == Counter(range(30)), f"runs per task: {runs(broker, report)}"
        assert broker.llen(poison_report) == 3, "the poison ran other than delivery_limit times"
        assert worker.poll() is None, "the worker died after the poison was set aside"
    finally:
        outputs.append(stop(worker))
        call_command("dead_letters", "drop", "--id", poison.id)
        broker.delete(poison_report)
    log = "".join(outputs)
    assert f"dead letter: task diagnostics.tasks.poison_task[{poison.id}] set aside" in log, log


def test_a_malformed_message_is_set_aside_and_the_messages_taken_with_it_run(
    broker: redis.Redis, names: tuple[str, str]
) -> None:
    queue, report = names
    before = broker.llen(DEAD_LETTERS)
    # Consumers take from the right: the bad ones sit among the good, in the batch of a single take.
    for index in range(5):
        noop_task.apply_async((report, index), queue=queue)
    broker.lpush(queue, "not json at all", '{"properties": {"no": "delivery tag"}}')
    for index in range(5, 10):
        noop_task.apply_async((report, index), queue=queue)
    worker = start_worker(queue, f"malformed-{queue}@test")
    try:
        wait_until(lambda: broker.llen(report) >= 10, timeout=20, message="the good messages did not all run")
        assert runs(broker, report) == Counter(range(10))
        assert celery_app.control.ping(destination=[f"malformed-{queue}@test"], timeout=1), "the worker is gone"
    finally:
        output = stop(worker)
    added = [str(entry) for entry in broker.lrange(DEAD_LETTERS, 0, broker.llen(DEAD_LETTERS) - before - 1)]
    for entry in added:
        broker.lrem(DEAD_LETTERS, 1, entry)
    raws = sorted(json.loads(entry)["raw"] for entry in added if json.loads(entry).get("queue") == queue)
    assert raws == sorted(['{"properties": {"no": "delivery tag"}}', "not json at all"]), added
    assert "2 message(s) that are not a kombu message" in output or output.count("not a kombu message") == 2, output


def test_a_dead_letter_requeued_runs_once(broker: redis.Redis, names: tuple[str, str]) -> None:
    queue, report = names
    result = noop_task.apply_async((report, 7), queue=queue)
    item = str(broker.rpop(queue))
    broker.lpush(DEAD_LETTERS, f'{{"reason":"deaths","deaths":3,"queue":"{queue}","at":0,"message":{item}}}')
    letters = [letter for letter in dead_letter_list() if letter.task_id == result.id]
    assert [(letter.task, letter.queue, letter.deaths) for letter in letters] == [
        ("diagnostics.tasks.noop_task", queue, 3)
    ]
    call_command("dead_letters", "requeue", "--id", result.id)
    assert broker.llen(queue) == 1
    assert not any(letter.task_id == result.id for letter in dead_letter_list())
    worker = start_worker(queue, f"requeued-{queue}@test")
    try:
        wait_until(lambda: broker.llen(report) >= 1, timeout=20, message="the requeued task did not run")
        time.sleep(1)
        assert runs(broker, report) == Counter([7])
    finally:
        stop(worker)


def test_replies_to_a_consumer_that_does_not_acknowledge_are_not_recorded(broker: redis.Redis) -> None:
    """`celery inspect` (the landing page, Flower) reads its replies without acknowledging them: kombu does not
    record those as unacknowledged, and neither may the transport, or each would be redelivered some day."""
    for _ in range(5):
        assert celery_app.control.inspect(timeout=1).ping()
    recorded = [value for value in broker.hvals("unacked") if "reply.celery.pidbox" in value]
    assert recorded == []


def test_a_task_that_holds_the_cpu_past_the_liveness_runs_once_and_so_does_what_its_worker_holds(
    broker: redis.Redis, names: tuple[str, str]
) -> None:
    """A task that keeps the gevent hub from switching for three times the liveness (CPU-bound work: a PDF, an image,
    a pandas step) while its worker holds countdown tasks, and another worker sweeps: the worker is alive
    throughout, so nothing it holds may be handed out. A heartbeat on the worker's timer falls silent with the hub:
    the sweep then gave back all it held, and the countdown tasks and the CPU-bound task itself ran twice."""
    queue, report = names
    busy = start_worker(queue, f"spinning-{queue}@test")
    sweeper = start_worker(f"{queue}-idle", f"sweeper-{queue}@test")
    try:
        for index in range(1, 6):
            noop_task.apply_async((report, index), queue=queue, countdown=5 * LIVENESS)
        wait_until(lambda: held_from(broker, queue) == 5, timeout=10, message="the worker did not take the tasks")
        spin_task.apply_async((3 * LIVENESS, report, 0), queue=queue)
        wait_until(lambda: broker.llen(report) >= 6, timeout=40, message="the tasks did not all run")
        time.sleep(LIVENESS + 2)  # a second run, if any, has had the time to happen
        assert runs(broker, report) == Counter(range(6)), f"runs per task: {runs(broker, report)}"
        assert "taken for dead" not in stop(busy)
    finally:
        stop(busy)
        stop(sweeper)
        broker.delete(f"{queue}-idle")
