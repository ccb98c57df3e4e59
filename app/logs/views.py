import uuid

from django.http import HttpRequest, JsonResponse
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.api import BadRequest, api_write, bad_request, read_payload
from logs.models import Log
from logs.selectors import log_get, log_list
from logs.services import log_enqueue, log_summary_enqueue
from logs.tasks import log_summarize_task

MAX_LIST_LIMIT = 200


def _log_json(log: Log) -> dict[str, object]:
    return {
        "id": log.pk,
        "request_id": str(log.request_id),
        "text": log.text,
        "created_at": log.created_at.isoformat(),
    }


@api_write
@require_http_methods(["GET", "POST"])
def log_collection(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        return _log_enqueue(request)
    raw_limit = request.GET.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
        return bad_request(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return JsonResponse({"logs": [_log_json(log) for log in log_list(limit=int(raw_limit))]})


def _log_enqueue(request: HttpRequest) -> JsonResponse:
    try:
        request_id = log_enqueue(text=read_payload(request).get("text"))
    except BadRequest as exc:
        return bad_request(str(exc))
    return JsonResponse(
        {
            "request_id": str(request_id),
            "status": "queued",
            "url": reverse("logs:detail", kwargs={"request_id": request_id}),
        },
        status=202,
    )


@require_GET
def log_detail(request: HttpRequest, request_id: uuid.UUID) -> JsonResponse:
    log = log_get(request_id=request_id)
    if log is None:
        return JsonResponse(
            {"request_id": str(request_id), "status": "pending", "error": "not written (yet): the worker writes it"},
            status=404,
        )
    return JsonResponse({"status": "written", **_log_json(log)})


@api_write
@require_POST
def log_summary_start(request: HttpRequest, request_id: uuid.UUID) -> JsonResponse:
    """Enqueues the django.tasks example for a written log; its result is followed at the returned url."""
    log = log_get(request_id=request_id)
    if log is None:
        return JsonResponse({"error": f"no log with request_id {request_id} (yet)"}, status=404)
    result = log_summary_enqueue(log=log)
    url = reverse("logs:summary-detail", kwargs={"result_id": result.id})
    return JsonResponse({"result_id": result.id, "status": result.status, "url": url}, status=202)


@require_GET
def log_summary_detail(request: HttpRequest, result_id: uuid.UUID) -> JsonResponse:
    try:
        result = log_summarize_task.get_result(str(result_id))
    except TaskResultDoesNotExist:
        return JsonResponse({"result_id": str(result_id), "error": "no such summary"}, status=404)
    body: dict[str, object] = {"result_id": result.id, "status": result.status, "attempts": result.attempts}
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["summary"] = result.return_value
    elif result.status == TaskResultStatus.FAILED:
        body["errors"] = [error.exception_class_path for error in result.errors]
    return JsonResponse(body)
