"""django-celery-results' backend (the admin shows its rows), with a result write that is one statement and
waits out a database restart.

* The library writes a result with get_or_create then save: a SELECT, a savepoint, the INSERT and its release,
  four round trips and most of the worker's time on a short task. Here it is one INSERT ... ON CONFLICT DO
  UPDATE, which also leaves no window for two writers of one task id to collide.
* A task that succeeded while Postgres restarts would lose its result: the write fails, Celery records a failure
  it cannot store either, and acknowledges the message. The write is retried instead, on the errors and with the
  waits the base task uses (celery_runtime.retries), on a new connection each time: about 70 s at the least.

Only writes wait. Reads (GET /tasks/<id>/) fail at once, and the web answers them with a 503.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import states
from django.db import connection
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

from celery_runtime.retries import transient_retry_countdown
from config.outages import describe, is_transient_database_error

logger = logging.getLogger(__name__)


# Every column a result write sets; date_created keeps the first write's time, date_done is refreshed.
_WRITTEN_FIELDS = [
    "status",
    "result",
    "traceback",
    "meta",
    "content_encoding",
    "content_type",
    "periodic_task_name",
    "task_name",
    "task_args",
    "task_kwargs",
    "worker",
    "date_done",
]


class RetryingDatabaseBackend(DatabaseBackend):
    transient_max_retries = 12
    transient_longest_countdown = 10.0

    def _store_result(
        self,
        task_id: str,
        result: Any,
        status: str,
        traceback: str | None = None,
        request: Any = None,
        using: str | None = None,
    ) -> Any:
        """The library's _store_result (the same columns, encoded the same way), written in one statement."""
        content_type, content_encoding, encoded_result = self.encode_content(result)
        meta = {**self._get_meta_from_request(request), "children": self.current_task_children(request)}
        _, _, encoded_meta = self.encode_content(meta)
        row = TaskResult(
            task_id=task_id,
            status=status,
            result=encoded_result,
            meta=encoded_meta,
            content_type=content_type,
            content_encoding=content_encoding,
            **self._get_extended_properties(request, traceback),
        )
        update_fields = list(_WRITTEN_FIELDS)
        if status == states.STARTED:
            row.date_started = timezone.now()  # type: ignore[attr-defined]  # a column django-celery-results added
            update_fields.append("date_started")
        TaskResult.objects.using(using).bulk_create(
            [row], update_conflicts=True, unique_fields=["task_id"], update_fields=update_fields
        )
        return encoded_result

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
