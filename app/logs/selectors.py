import uuid

from django.db.models import QuerySet

from logs.models import Log


def log_list(*, limit: int = 50) -> QuerySet[Log]:
    return Log.objects.all()[:limit]


def log_get(*, request_id: uuid.UUID) -> Log | None:
    return Log.objects.filter(request_id=request_id).first()


def log_get_by_pk(*, pk: int) -> Log | None:
    return Log.objects.filter(pk=pk).first()
