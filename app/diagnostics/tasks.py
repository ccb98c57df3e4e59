"""Diagnostic tasks for `make bench` and the worker's integration tests. `report_to`, when given, names a
Redis list that receives 'sent_at done_at' when the task ends, so runs can be timed without a result backend
(report_batched: within 20 ms, with the process's other reports, diagnostics.reports)."""

import time

from celery import shared_task

from diagnostics.selectors import probe_record_get
from diagnostics.services import probe_database_sleep, probe_record_create, probe_report


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


@shared_task
def database_sleep_insert_task(
    seconds: float, key: str, report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False
) -> None:
    probe_database_sleep(seconds=seconds)
    probe_record_create(key=key)
    _report(report_to, sent_at, report_batched)


@shared_task
def database_insert_select_task(
    key: str, report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False
) -> None:
    """A short-query task: one insert and one select, where opening a connection would cost more than both."""
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
def runtime_report_task() -> dict[str, object]:
    """What the worker process that runs it is: pool, and whether its ORM setup is the gevent-safe one."""
    from django.conf import settings

    from celery_runtime import green

    patched = green.gevent_is_patched()
    return {
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
