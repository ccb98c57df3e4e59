from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from heartbeat.selectors import heartbeat_list


@require_GET
def heartbeat_collection(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "heartbeats": [
                {"name": beat.name, "runs": beat.runs, "last_run_at": beat.last_run_at.isoformat()}
                for beat in heartbeat_list()
            ]
        }
    )
