"""Django's Tasks framework (`from django.tasks import task`) run by this project's Celery worker.

`TASKS = {"default": {"BACKEND": "celery_runtime.django_tasks.CeleryBackend"}}` (config/settings/base.py). Each
`@task` function becomes a Celery task named by its module path (`reports.tasks.report_render`), registered with
Celery's public `app.task()` when the function's module is imported: in the web at import, in the worker when it
autodiscovers the apps' tasks.py. So it runs on the gevent worker as the project's own Celery tasks do, with the
same runtime (the base task's retries of transient database errors, redelivery, the database pool, soft
shutdown), and shows in Flower under that name. Results go through the project's result backend
(django-celery-results, in the admin); how its rows map to Django's TaskResult is in django_tasks_results.

Enqueueing (`.enqueue()`):
* writes the result row (PENDING) at once, in the caller's transaction, so `get_result(id)` answers READY from the
  first moment, and Postgres down refuses the enqueue with the database's error (the web's 503);
* sends the message with Django's `transaction.on_commit` (robust=False: a Redis that cannot be reached raises,
  the web's 503, and the row is deleted): inside a transaction, when it commits, so the worker never looks for a
  row not there yet; a rollback sends nothing and takes the row with it. Outside a transaction, at once;
* `run_after` is Celery's eta (the transport never hands a held eta message out twice); `queue_name` is the
  Celery queue, Django's "default" the worker's default queue; `priority` is kombu's, see `kombu_priority`.

Why not django-tasks-celery (0.1.1, PyPI), tried first (docs/django-tasks.md has the details): its priority
mapping (higher Django, higher kombu number) runs Django's order backwards on Redis, where kombu serves the
lowest number first; it registers tasks with Celery's private `_task_from_fun`; its tasks inherit the project's
CELERY_TASK_IGNORE_RESULT, so no result is ever stored and `refresh()` stays READY; it sends at once inside a
transaction; and its results have no enqueued_at, started_at, RUNNING or attempts. This backend is about as long,
on public API (Django's BaseTaskBackend and Task.call, Celery's app.task and send_task, django-celery-results'
model and its documented `request.meta`), with two exceptions each module names: Django's TaskResult's
`_return_value` (django_tasks_results) and asyncio's running-loop functions for greenlets (green_asyncio).
"""

from __future__ import annotations

import uuid
from functools import partial
from inspect import iscoroutinefunction
from typing import Any

from celery import states
from django.db import connection, transaction
from django.tasks import DEFAULT_TASK_QUEUE_NAME, Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json

from celery_runtime import django_tasks_results as results
from celery_runtime import green, green_asyncio
from config.outages import is_transient_database_error

# Django's priority (-100..100, higher first) to kombu's on Redis (0..9, LOWER first), which keeps four lists per
# queue (kombu's priority steps 0, 3, 6, 9): the queue's own list, then `<queue>\x06\x163` and so on. Within one
# step tasks run in the order sent. Django's default, 0, has a step of its own, so any priority above it runs
# first and any below it later; Celery's tasks sent without a priority share the first step with Django's
# positive ones.
_KOMBU_STEP_ABOVE_DEFAULT, _KOMBU_STEP_DEFAULT, _KOMBU_STEP_BELOW, _KOMBU_STEP_LOWEST = 0, 3, 6, 9


def kombu_priority(django_priority: int) -> int:
    if django_priority > 0:
        return _KOMBU_STEP_ABOVE_DEFAULT
    if django_priority == 0:
        return _KOMBU_STEP_DEFAULT
    return _KOMBU_STEP_BELOW if django_priority >= -50 else _KOMBU_STEP_LOWEST


# Module paths made Celery tasks in this process (backends are per thread; Celery's registry is per process).
_registered: set[str] = set()


def _celery_app() -> Any:
    from config.celery_app import app  # imported late: the Celery app's module imports the settings, then apps

    return app


class CeleryBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        """Django's checks, then the function becomes a Celery task (once): this runs as @task decorates it."""
        super().validate_task(task)
        if task.module_path not in _registered:
            _registered.add(task.module_path)
            _register(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        result_id = str(uuid.uuid4())
        enqueued_at = timezone.now()
        args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        results.record_enqueued(task, result_id, enqueued_at=enqueued_at, args=args, kwargs=kwargs)
        options: dict[str, Any] = {"task_id": result_id, "priority": kombu_priority(task.priority)}
        if task.queue_name != DEFAULT_TASK_QUEUE_NAME:
            options["queue"] = task.queue_name
        if task.run_after is not None:
            options["eta"] = task.run_after
        send = partial(_send, result_id, task.module_path, args=args, kwargs=kwargs, options=options)
        transaction.on_commit(send, robust=False)
        task_result: TaskResult[..., Any] = TaskResult(
            task=task,
            id=result_id,
            status=TaskResultStatus.READY,
            enqueued_at=enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=task_result)
        return task_result

    def get_result(self, result_id: str) -> TaskResult:
        return results.read(result_id, backend=self.alias)


def _send(result_id: str, name: str, *, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
    """The message, once the enqueuing transaction has committed. Refused (Redis away: the web's 503), the result
    row goes too, so get_result(id) does not answer READY for a task that was never sent."""
    try:
        _celery_app().send_task(name, args=args, kwargs=kwargs, **options)
    except Exception:
        results.forget(result_id)
        raise


def _register(task: Task) -> None:
    """The Celery task that runs `task` on the worker: the project's base task (retries), results stored."""

    def run(celery_task: Any, *args: Any, **kwargs: Any) -> Any:
        return _execute(celery_task, task, args, kwargs)

    run.__module__, run.__name__, run.__qualname__ = task.func.__module__, task.func.__name__, task.func.__qualname__
    run.__doc__ = task.func.__doc__
    _celery_app().task(name=task.module_path, bind=True, ignore_result=False)(run)


def _execute(celery_task: Any, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """One attempt on the worker: recorded as STARTED (RUNNING) with this worker added to the attempts, the
    function called, and Django's signals sent. Its return value or exception is stored by Celery as for any task."""
    request = celery_task.request
    request.meta = results.attempt_meta(request, args=list(args), kwargs=kwargs)
    celery_task.update_state(state=states.STARTED, meta=None)
    task_result = results.from_meta(task, request.id, request.meta, status=TaskResultStatus.RUNNING)
    task_started.send(CeleryBackend, task_result=task_result)
    if task.takes_context:
        args = (TaskContext(task_result=task_result), *args)
    try:
        value = _call(task, args, kwargs)
    except Exception as exc:
        if not is_transient_database_error(exc):  # those are retried by the base task: not finished
            failed = results.with_outcome(task_result, exc=exc)
            task_finished.send(CeleryBackend, task_result=failed)
        raise
    value = normalize_json(value)
    task_finished.send(CeleryBackend, task_result=results.with_outcome(task_result, value=value))
    return value


def _call(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Django's Task.call. A coroutine function runs to its end in an event loop of its own (async_to_sync), whose
    waits yield to the gevent hub. Under gevent each greenlet is given its own running loop first
    (celery_runtime.green_asyncio), without which the worker's other tasks would run "inside" this loop."""
    if iscoroutinefunction(task.func):
        # Its ORM calls run in other greenlets (sync_to_async), with connections of their own: the one the start
        # was written with goes back to the worker's pool, not held idle while the coroutine waits.
        connection.close()
        if green.gevent_is_patched():
            green_asyncio.install()
    return task.call(*args, **kwargs)
