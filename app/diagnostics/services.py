import time
from functools import cache

import redis
from django.conf import settings
from django.db import connection

from celery_runtime.redis_client import broker_client
from diagnostics.models import ProbeRecord
from diagnostics.reports import BatchedReports


def probe_record_create(*, key: str) -> ProbeRecord:
    """Inserts one row, in one statement (autocommit): a duplicate key raises IntegrityError and leaves the
    connection clean for the next task."""
    return ProbeRecord.objects.create(key=key)


def probe_database_sleep(*, seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


@cache
def _report_client() -> redis.Redis:
    return broker_client(settings.DIAGNOSTICS_REPORTS_URL or None)


@cache
def _batched_reports() -> BatchedReports:
    return BatchedReports(_report_client())


def probe_run_record(*, runs_to: str, key: str) -> None:
    """Pushes `key` to a Redis list as a run starts: a test counts runs there, not rows (a second run of a task
    whose write is idempotent, or fails on a unique key, leaves no second row)."""
    _report_client().rpush(runs_to, key)


def probe_report(*, report_to: str, sent_at: float, batched: bool = False) -> None:
    """Pushes 'sent_at done_at' to a Redis list, so a benchmark can time enqueue-to-done without results; at
    once, or with others of this process within 20 ms (batched, what `make bench` asks for)."""
    if batched:
        _batched_reports().add(report_to, sent_at)
    else:
        _report_client().rpush(report_to, f"{sent_at} {time.time()}")
