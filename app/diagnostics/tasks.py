"""Diagnostic tasks for `make bench` and the worker's integration tests. `report_to`, when given, names a
Redis list that receives 'sent_at done_at' when the task ends, so runs can be timed without a result backend
(report_batched: within 20 ms, with the process's other reports, diagnostics.reports)."""

import asyncio
import time
from typing import Any

from celery import shared_task
from django.db import OperationalError
from django.tasks import TaskContext, task

from diagnostics.selectors import probe_record_get
from diagnostics.services import probe_database_sleep, probe_record_create, probe_report, probe_run_record


def _report(report_to: str | None, sent_at: float | None, batched: bool) -> None:
    if report_to:
        probe_report(report_to=report_to, sent_at=sent_at or 0.0, batched=batched)


@shared_task
def noop_task(report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False) -> None:
    _report(report_to, sent_at, report_batched)


@shared_task
def sleep_task(
    seconds: float, report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False
) -> None:
    time.sleep(seconds)  # stands in for I/O: an HTTP call, a file on a network share
    _report(report_to, sent_at, report_batched)


@shared_task(bind=True)
def delivery_sleep_task(self: Any, seconds: float, runs_to: str, index: int) -> None:
    """Sleeps, then pushes 'index redelivered' to `runs_to`: whether its message came back after its worker's death
    (`delivery_info['redelivered']`, as Celery's request has it)."""
    time.sleep(seconds)
    probe_run_record(runs_to=runs_to, key=f"{index} {bool(self.request.delivery_info.get('redelivered'))}")


@shared_task
def spin_task(
    seconds: float, report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False
) -> None:
    """Holds the CPU for `seconds` without yielding to the gevent hub: PDF rendering, image work, a pandas step."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(1000))
    _report(report_to, sent_at, report_batched)


@shared_task
def database_sleep_insert_task(
    seconds: float, key: str, report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False
) -> None:
    probe_database_sleep(seconds=seconds)
    probe_record_create(key=key)
    _report(report_to, sent_at, report_batched)


@shared_task
def database_insert_select_task(
    key: str,
    report_to: str | None = None,
    sent_at: float | None = None,
    report_batched: bool = False,
    runs_to: str | None = None,
) -> None:
    """A short-query task: one insert and one select, where opening a connection would cost more than both.
    `runs_to`, when given, names a Redis list that gets `key` as each run starts (probe_run_record)."""
    if runs_to:
        probe_run_record(runs_to=runs_to, key=key)
    probe_record_get(pk=probe_record_create(key=key).pk)
    _report(report_to, sent_at, report_batched)


@shared_task(ignore_result=False)
def sum_task(x: int, y: int) -> int:
    """The smallest task with a result: what `make bench` times a result's round trip with."""
    return x + y


@shared_task(ignore_result=False)
def probe_insert_task(key: str) -> int:
    return probe_record_create(key=key).pk


@shared_task(ignore_result=False)
def probe_roundtrip_task(key: str) -> dict[str, object]:
    """Writes a row and reads it back on the same connection: what a task sees of its own writes, and the
    process and Postgres session it ran in."""
    import os

    from django.db import connection

    record = probe_record_create(key=key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    return {"key": probe_record_get(pk=record.pk).key, "pid": os.getpid(), "backend": backend}


@shared_task(ignore_result=False)
def database_fanout_task(count: int, prefix: str) -> int:
    """Writes `count` rows from as many greenlets it spawns (a fan-out inside a task): each greenlet opens a
    connection of its own, which Celery does not close. Returns how many were written."""
    import gevent

    greenlets = [gevent.spawn(probe_record_create, key=f"{prefix}-{index}") for index in range(count)]
    gevent.joinall(greenlets, raise_error=True)
    return len(greenlets)


@shared_task(acks_late=False)
def process_exit_task(status: int = 70) -> None:
    """Ends the worker process that runs it at once, as a segfault, a C extension's abort or the OOM killer would:
    what `make smoke` and `make prod-smoke` check the worker comes back from. Acknowledged before it runs, so
    it is not delivered again."""
    import os

    os._exit(status)


@shared_task
def poison_task(report_to: str | None = None, sent_at: float | None = None, status: int = 70) -> None:
    """A poison message: ends the worker process that runs it, every time, after reporting the run. Acknowledged
    late like the others, so it comes back after each death until the transport sets it aside."""
    import os

    _report(report_to, sent_at, False)
    os._exit(status)


@shared_task(ignore_result=False)
def runtime_report_task() -> dict[str, object]:
    """What the worker process that runs it is: pool, and whether its ORM setup is the gevent-safe one."""
    from django.conf import settings
    from django.db import connections

    from celery_runtime import green

    patched = green.gevent_is_patched()
    pool = getattr(connections["default"], "pool", None)
    return {
        # Slots of the process's connection pool that no connection holds (None: no pool in this process).
        "database_pool_free_slots": pool.free_slots() if pool is not None else None,
        "gevent_patched": patched,
        "psycopg2_wait_callback": green.psycopg2_wait_callback_name(),
        "connections_greenlet_local": green.connections_are_greenlet_local() if patched else False,
        "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
        "database_engine": settings.DATABASES["default"]["ENGINE"],
        "database_pool_size": settings.DATABASE_POOL_SIZE,
    }


@shared_task(ignore_result=False)
def database_then_sleep_task(seconds: float) -> str:
    """Opens its connection with a query, then holds it idle: a test drops it before the result is written."""
    probe_database_sleep(seconds=0)
    time.sleep(seconds)
    return "stored"


# --- The same runtime through Django's Tasks framework (celery_runtime.django_tasks): what the worker tests,
# `make smoke` and `make bench` send with `.enqueue()`.


@task
def django_noop_task(
    *, report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False
) -> None:
    _report(report_to, sent_at, report_batched)


@task
def django_run_task(*, runs_to: str, key: str, seconds: float = 0.0) -> str:
    """Records its run in `runs_to` as it starts, then sleeps `seconds` (stands in for I/O); returns `key`."""
    probe_run_record(runs_to=runs_to, key=key)
    time.sleep(seconds)
    return key


@task
def django_failing_task(*, message: str) -> None:
    raise ValueError(message)


@task
async def django_async_sleep_task(*, seconds: float, runs_to: str, key: str) -> str:
    """Sleeps in an event loop: on the gevent worker the hub goes on serving the other tasks meanwhile."""
    await asyncio.sleep(seconds)
    probe_run_record(runs_to=runs_to, key=key)
    return key


@task(takes_context=True)
def django_attempt_task(context: TaskContext, *, transient_failures: int) -> int:
    """Raises a transient database error on its first `transient_failures` attempts; returns its attempt number."""
    if context.attempt <= transient_failures:
        raise OperationalError(f"simulated: the database is unavailable (attempt {context.attempt})")
    return context.attempt


@task
def django_sum_task(*, x: int, y: int) -> int:
    """sum_task through django.tasks: what `make bench` times a result's round trip with, beside sum_task."""
    return x + y


@task
def django_runtime_report_task() -> dict[str, object]:
    """runtime_report_task's report, through django.tasks: what `make smoke` enqueues."""
    return runtime_report_task()
