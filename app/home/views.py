"""GET /: the landing page. Which services are up, where to go next, and the example tasks to try by hand:
send a text that the worker writes as a row, run add/mul/xsum and see the result come back. Server-rendered;
while something sent is not done yet, the page reloads itself every 2 seconds (no JavaScript).

On when settings.LANDING_PAGE is (DJANGO_LANDING_PAGE; by default in development only): otherwise / is a 404."""

from __future__ import annotations

import uuid
from typing import Any

from django.apps import apps
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from config.api import BadRequest
from home.selectors import stack_status_get

# >>> example apps
RECENT_LOGS = 5


def _example_on(app: str) -> bool:
    """The example app is installed and its endpoints are on (off in production unless switched on)."""
    return apps.is_installed(app) and settings.EXAMPLE_ENDPOINTS


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


# <<< example apps


def _demo_context(request: HttpRequest) -> dict[str, Any]:
    """What the page shows of the example apps, and whether something sent to the worker is still pending."""
    context: dict[str, Any] = {"refresh": False}
    # >>> example apps
    context["has_logs"] = _example_on("logs")
    context["has_calc"] = _example_on("calc")
    context["has_heartbeat"] = _example_on("heartbeat")
    pending = False
    if context["has_logs"]:
        from logs.selectors import log_get, log_list

        context["recent_logs"] = list(log_list(limit=RECENT_LOGS))
        request_id = _uuid(request.GET.get("log"))
        if request_id:
            written = log_get(request_id=request_id)
            context["sent_log"] = {"request_id": request_id, "row": written}
            pending = pending or written is None
    if context["has_calc"]:
        from calc.selectors import task_outcome_get

        task_id = _uuid(request.GET.get("task"))
        if task_id:
            outcome = task_outcome_get(task_id=str(task_id))
            context["sent_task"] = {"task_id": task_id, "outcome": outcome, "operation": request.GET.get("op", "")}
            pending = pending or not outcome.ready
    context["refresh"] = pending
    # <<< example apps
    return context


def _send(request: HttpRequest) -> HttpResponseRedirect:
    """The form's action, through the same services and checks as the JSON API; BadRequest says what is wrong."""
    action = request.POST.get("action", "")
    # >>> example apps
    if action == "log" and _example_on("logs"):
        from logs.services import log_enqueue

        request_id = log_enqueue(text=request.POST.get("text"))
        return HttpResponseRedirect(f"{reverse('home')}?log={request_id}#try-log")
    if action in ("add", "mul", "xsum") and _example_on("calc"):
        from calc.services import calculation_start

        payload = {key: value for key, value in request.POST.items() if key in ("x", "y", "numbers")}
        result = calculation_start(operation=action, payload=payload)
        return HttpResponseRedirect(f"{reverse('home')}?task={result.id}&op={action}#try-calc")
    # <<< example apps
    raise BadRequest(f"unknown action {action!r}")


@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    if not settings.LANDING_PAGE:
        raise Http404("the landing page is off (DJANGO_LANDING_PAGE)")
    error = None
    if request.method == "POST":
        try:
            return _send(request)
        except BadRequest as exc:
            error = str(exc)
    context = {
        "status": stack_status_get(),
        "flower_url": settings.FLOWER_URL,
        "error": error,
        "form": request.POST if error else {},
        **_demo_context(request),
    }
    # A status of 400 with the reason on the page, as the JSON API answers bad input.
    return render(request, "home/index.html", context, status=400 if error else 200)
