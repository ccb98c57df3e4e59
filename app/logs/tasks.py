"""The example's two kinds of task, side by side: one written with Celery's @shared_task, one with Django's @task
(django.tasks, run by the same Celery worker: celery_runtime.django_tasks). Both are thin: they fetch by id and
call a service."""

import logging
import uuid

from celery import shared_task
from django.tasks import task

from logs.selectors import log_get_by_pk
from logs.services import log_create, log_summarize

logger = logging.getLogger(__name__)


@shared_task
def log_write_task(request_id: str, text: str) -> None:
    log = log_create(request_id=uuid.UUID(request_id), text=text)
    logger.info("log %s written for request %s", log.pk, request_id)


@task
def log_summarize_task(*, log_id: int) -> dict[str, int] | None:
    """Counts a log's words and characters; its result is read back with Django's API (GET /logs/summaries/<id>/)."""
    log = log_get_by_pk(pk=log_id)
    return log_summarize(log=log) if log is not None else None
