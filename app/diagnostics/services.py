import time
from functools import cache

import redis
from django.conf import settings
from django.db import connection

from diagnostics.models import ProbeRecord


def probe_record_create(*, key: str) -> ProbeRecord:
    """Inserts one row, in one statement (autocommit): a duplicate key raises IntegrityError and leaves the
    connection clean for the next task."""
    return ProbeRecord.objects.create(key=key)


def probe_database_sleep(*, seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


@cache
def _report_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def probe_report(*, report_to: str, sent_at: float) -> None:
    """Pushes 'sent_at done_at' to a Redis list, so a benchmark can time enqueue-to-done without results."""
    _report_client().rpush(report_to, f"{sent_at} {time.time()}")
