"""The project's base task: a transient database error is retried with backoff, not dropped.

Celery acknowledges a task that raised, acks late or not (its FAQ: "Should I use retry or acks_late?"), so a
task that meets Postgres restarting, failing over, or dropping its connections would be gone. Every task of the
project (config.celery_app sets this class as the app's task_cls) retries such errors instead, for long enough
to outlast a restart or a failover: the waits double from 1 s up to 15 s, each shortened by up to a quarter at
random so retries spread out, over 12 retries, about 100 s at the least (transient_retry_countdown).

What a retry cannot mend is not retried: an IntegrityError, a statement that hit statement_timeout, a bug.
A task can change the policy with the class attributes below (@shared_task(transient_max_retries=3)).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery.contrib.django.task import DjangoTask

from config.outages import describe, is_transient_database_error

logger = logging.getLogger(__name__)


def transient_retry_countdown(retries: int, *, first: float = 1.0, longest: float = 15.0) -> float:
    """Seconds before retry number `retries` + 1: doubling from `first` up to `longest`, less up to 25 %."""
    return min(longest, first * 2**retries) * random.uniform(0.75, 1.0)


class RetryingTask(DjangoTask):
    transient_max_retries = 12
    transient_first_countdown = 1.0
    transient_longest_countdown = 15.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:  # a plain function call, in a test or a shell: no retries
            return super().__call__(*args, **kwargs)
        # Run by a worker (or eagerly): Celery has pushed this delivery's request already. Task.__call__ would
        # push a bare one over it (no id, no retry count), so run is called as Celery's docs show.
        try:
            return self.run(*args, **kwargs)
        except Exception as exc:
            if not is_transient_database_error(exc):
                raise
            retries = self.request.retries
            countdown = transient_retry_countdown(
                retries, first=self.transient_first_countdown, longest=self.transient_longest_countdown
            )
            logger.warning(
                "%s[%s]: the database is unavailable (%s); retry %d of %d in %.1fs",
                self.name,
                self.request.id,
                describe(exc),
                retries + 1,
                self.transient_max_retries,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=self.transient_max_retries) from exc
