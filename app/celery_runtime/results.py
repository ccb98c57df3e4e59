"""django-celery-results' backend, with a result write that waits out a database restart.

A task that succeeded while Postgres restarts would lose its result: the write fails, Celery records a failure
it cannot store either, and acknowledges the message. The write is retried instead, on the errors and with the
waits the base task uses (celery_runtime.retries), on a new connection each time: about 70 s at the least.

Only writes wait. Reads (GET /tasks/<id>/) fail at once, and the web answers them with a 503.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import connection
from django_celery_results.backends.database import DatabaseBackend

from celery_runtime.retries import transient_retry_countdown
from config.outages import describe, is_transient_database_error

logger = logging.getLogger(__name__)


class RetryingDatabaseBackend(DatabaseBackend):
    transient_max_retries = 12
    transient_longest_countdown = 10.0

    def store_result(self, task_id: str, *args: Any, **kwargs: Any) -> Any:
        retries = 0
        while True:
            try:
                return super().store_result(task_id, *args, **kwargs)
            except Exception as exc:
                if not is_transient_database_error(exc) or retries >= self.transient_max_retries:
                    raise
                connection.close()  # broken: the next attempt connects anew
                wait = transient_retry_countdown(retries, longest=self.transient_longest_countdown)
                retries += 1
                logger.warning(
                    "result of %s: the database is unavailable (%s); write %d of %d in %.1fs",
                    task_id,
                    describe(exc),
                    retries + 1,
                    self.transient_max_retries + 1,
                    wait,
                )
                time.sleep(wait)
