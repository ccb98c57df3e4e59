import math
import uuid
from typing import Any

from celery import states
from celery.result import AsyncResult
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from calc.selectors import task_outcome_get
from calc.tasks import Number, add, mul, xsum
from config.api import BadRequest, bad_request, read_payload, require_database
from config.celery_app import debug_task

MAX_XSUM_NUMBERS = 10_000
MAX_MAGNITUDE = 10**18  # keeps every result JSON-serialisable (Python refuses ints of over 4,300 digits)


def _number(payload: dict[str, Any], field: str) -> Number:
    if field not in payload:
        raise BadRequest(f"{field} is required")
    return _as_number(payload[field], field)


def _as_number(value: Any, field: str) -> Number:
    if isinstance(value, str):  # form fields arrive as text
        try:
            value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise BadRequest(f"{field} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{field} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{field} must be a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise BadRequest(f"{field} must be between -1e18 and 1e18")
    return value


def _enqueue(task: Any, *args: Any) -> JsonResponse:
    """Sends the task and answers 202; refused (503) first if Postgres, where its result goes, is away."""
    require_database()
    result: AsyncResult = task.delay(*args)
    # PENDING without asking the result backend: the task was just sent, and a failed read here would refuse
    # a task that will run all the same.
    return JsonResponse(
        {"task_id": result.id, "state": states.PENDING, "url": reverse("calc:task-status", args=[result.id])},
        status=202,
    )


def _start_binary(request: HttpRequest, task: Any) -> JsonResponse:
    try:
        payload = read_payload(request)
        x, y = _number(payload, "x"), _number(payload, "y")
    except BadRequest as exc:
        return bad_request(str(exc))
    return _enqueue(task, x, y)


@csrf_exempt
@require_POST
def add_start(request: HttpRequest) -> JsonResponse:
    return _start_binary(request, add)


@csrf_exempt
@require_POST
def mul_start(request: HttpRequest) -> JsonResponse:
    return _start_binary(request, mul)


@csrf_exempt
@require_POST
def xsum_start(request: HttpRequest) -> JsonResponse:
    try:
        payload = read_payload(request)
        numbers = payload.get("numbers")
        if isinstance(numbers, str):  # form: numbers=1,2,3
            numbers = [item for item in numbers.split(",") if item.strip()]
        if not isinstance(numbers, list):
            raise BadRequest("numbers is required: a JSON array, or comma-separated in a form")
        if len(numbers) > MAX_XSUM_NUMBERS:
            raise BadRequest(f"numbers has {len(numbers)} items; at most {MAX_XSUM_NUMBERS} are allowed")
        values = [_as_number(item, f"numbers[{index}]") for index, item in enumerate(numbers)]
    except BadRequest as exc:
        return bad_request(str(exc))
    return _enqueue(xsum, values)


@csrf_exempt
@require_POST
def debug_start(request: HttpRequest) -> JsonResponse:
    return _enqueue(debug_task)


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
