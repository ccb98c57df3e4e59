"""Django's TaskResult for a `django.tasks` task, kept in django-celery-results' table (the admin shows it).

One row per task id, as for every Celery result of the project:
* the web writes it PENDING when the task is enqueued (record_enqueued), so a result exists from the start;
* each attempt on the worker writes it STARTED, with this worker added to `worker_ids` (attempt_meta); the base
  task's retry of a transient database error writes RETRY; Celery writes SUCCESS or FAILURE with the return
  value or the exception and its traceback, as for any task;
* Django's timestamps and attempts live in the row's `meta` column, which django-celery-results fills from the
  task's `request.meta` on every write (its documented way to keep data of one's own beside a result).

Celery's states map to Django's: PENDING, RECEIVED and RETRY are READY, STARTED is RUNNING, SUCCESS is
SUCCESSFUL, FAILURE and REVOKED are FAILED. A failed result's `errors` holds the last attempt's exception only.

Django's TaskResult keeps the return value in `_return_value`, which is not a constructor argument: it is set as
Django's own backends set it (django/tasks/backends/immediate.py), the one private detail here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime
from traceback import format_exception
from typing import Any

from celery import states
from django.db import DatabaseError
from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

_STATUS = {
    states.PENDING: TaskResultStatus.READY,
    states.RECEIVED: TaskResultStatus.READY,
    states.RETRY: TaskResultStatus.READY,
    states.STARTED: TaskResultStatus.RUNNING,
    states.SUCCESS: TaskResultStatus.SUCCESSFUL,
    states.FAILURE: TaskResultStatus.FAILED,
    states.REVOKED: TaskResultStatus.FAILED,
    states.REJECTED: TaskResultStatus.FAILED,
}
_FINISHED = {TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED}


def _rows() -> Any:
    # Imported late: the backend is built as the first @task is decorated, possibly before the apps are ready.
    from django_celery_results.models import TaskResult as ResultRow

    return ResultRow.objects


def record_enqueued(
    task: Task, result_id: str, *, enqueued_at: datetime, args: list[Any], kwargs: dict[str, Any]
) -> None:
    meta = {"enqueued_at": enqueued_at.isoformat(), "worker_ids": [], "args": args, "kwargs": kwargs}
    _rows().create(
        task_id=result_id,
        task_name=task.module_path,
        status=states.PENDING,
        content_type="application/json",
        content_encoding="utf-8",
        meta=json.dumps(meta),
    )


def forget(result_id: str) -> None:
    """Deletes the row of a task whose message could not be sent; with Postgres away too, leaves it (logged)."""
    try:
        _rows().filter(task_id=result_id).delete()
    except DatabaseError as exc:
        logger.warning("the result row of %s, whose message was not sent, is left READY: %s", result_id, exc)


def _stored_meta(result_id: str) -> dict[str, Any]:
    raw = _rows().filter(task_id=result_id).values_list("meta", flat=True).first()
    return _json(raw) or {}


def attempt_meta(request: Any, *, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """What this attempt stores in the row's meta: the earlier attempts' workers and this one's."""
    stored = _stored_meta(request.id)
    now = timezone.now().isoformat()
    return {
        "enqueued_at": stored.get("enqueued_at"),
        "started_at": stored.get("started_at") or now,
        "last_attempted_at": now,
        "worker_ids": [*stored.get("worker_ids", []), request.hostname],
        "args": args,
        "kwargs": kwargs,
    }


def from_meta(task: Task, result_id: str, meta: dict[str, Any], *, status: TaskResultStatus) -> TaskResult:
    return TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=_time(meta.get("enqueued_at")),
        started_at=_time(meta.get("started_at")),
        finished_at=None,
        last_attempted_at=_time(meta.get("last_attempted_at")),
        args=meta.get("args", []),
        kwargs=meta.get("kwargs", {}),
        backend=task.backend,
        errors=[],
        worker_ids=list(meta.get("worker_ids", [])),
    )


def with_outcome(running: TaskResult, *, value: Any = None, exc: BaseException | None = None) -> TaskResult:
    """The attempt's TaskResult once it ended: SUCCESSFUL with `value`, or FAILED with `exc`."""
    if exc is not None:
        error = TaskError(exception_class_path=_class_path(type(exc)), traceback="".join(format_exception(exc)))
        return replace(running, status=TaskResultStatus.FAILED, finished_at=timezone.now(), errors=[error])
    done = replace(running, status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now())
    object.__setattr__(done, "_return_value", value)
    return done


def read(result_id: str, *, backend: str) -> TaskResult:
    """The stored result; TaskResultDoesNotExist when no `django.tasks` task has that id."""
    row = _rows().filter(task_id=result_id).first()
    task = _task(row.task_name) if row is not None else None
    if task is None:
        raise TaskResultDoesNotExist(result_id)
    meta = _json(row.meta) or {}
    status = _STATUS.get(row.status, TaskResultStatus.READY)
    result = replace(
        from_meta(task, result_id, meta, status=status),
        backend=backend,
        finished_at=row.date_done if status in _FINISHED else None,
        errors=_errors(row) if status == TaskResultStatus.FAILED else [],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", _json(row.result))
    return result


def _errors(row: Any) -> list[TaskError]:
    stored = _json(row.result)
    if not isinstance(stored, dict) or "exc_type" not in stored:
        return []
    path = f"{stored.get('exc_module') or 'builtins'}.{stored['exc_type']}"
    return [TaskError(exception_class_path=path, traceback=row.traceback or "")]


def _task(module_path: str | None) -> Task | None:
    """The @task function a row names; None for a Celery task's row."""
    try:
        found = import_string(module_path or "")
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _json(raw: str | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _time(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None
