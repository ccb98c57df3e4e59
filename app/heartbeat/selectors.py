from django.db.models import QuerySet

from heartbeat.models import Heartbeat


def heartbeat_list() -> QuerySet[Heartbeat]:
    return Heartbeat.objects.order_by("name")
