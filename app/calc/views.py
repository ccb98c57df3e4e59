import uuid

from celery import states
from celery.result import AsyncResult
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from calc.selectors import task_outcome_get
from calc.services import calculation_start
from config.api import BadRequest, api_write, bad_request, read_payload, require_database
from config.celery_app import debug_task


def _started(result: AsyncResult) -> JsonResponse:
    # PENDING without asking the result backend: the task was just sent, and a failed read here would refuse
    # a task that will run all the same.
    return JsonResponse(
        {"task_id": result.id, "state": states.PENDING, "url": reverse("calc:task-status", args=[result.id])},
        status=202,
    )


def _start(request: HttpRequest, operation: str) -> JsonResponse:
    try:
        return _started(calculation_start(operation=operation, payload=read_payload(request)))
    except BadRequest as exc:
        return bad_request(str(exc))


@api_write
@require_POST
def add_start(request: HttpRequest) -> JsonResponse:
    return _start(request, "add")


@api_write
@require_POST
def mul_start(request: HttpRequest) -> JsonResponse:
    return _start(request, "mul")


@api_write
@require_POST
def xsum_start(request: HttpRequest) -> JsonResponse:
    return _start(request, "xsum")


@api_write
@require_POST
def debug_start(request: HttpRequest) -> JsonResponse:
    require_database()
    return _started(debug_task.delay())


@require_GET
def task_status(request: HttpRequest, task_id: str) -> JsonResponse:
    try:
        uuid.UUID(task_id)
    except ValueError:
        return bad_request(f"{task_id!r} is not a task id (a UUID)")
    outcome = task_outcome_get(task_id=task_id)
    return JsonResponse(
        {
            "task_id": task_id,
            "state": outcome.state,
            "ready": outcome.ready,
            "result": outcome.result,
            "error": outcome.error,
        }
    )
