"""The project's URLs and one the tests alone mount: an endpoint that enqueues a task the way the project's
views do, so what config/ does in an outage is tested whichever apps the project keeps."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from config.api import require_database
from diagnostics.tasks import noop_task


@csrf_exempt
def enqueue(request: HttpRequest) -> JsonResponse:
    require_database()
    noop_task.delay_on_commit()  # type: ignore[attr-defined]  # Celery 5.4+, not in the stubs
    return JsonResponse({"status": "queued"}, status=202)


urlpatterns = [
    path("", include("config.urls")),
    path("test/enqueue/", enqueue),
]
