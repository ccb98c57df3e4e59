from django.db.models import F
from django.utils import timezone

from heartbeat.models import Heartbeat


def heartbeat_record(*, name: str) -> Heartbeat:
    """Counts one run and stamps its time. The count is incremented in SQL, so concurrent runs never lose one."""
    now = timezone.now()
    Heartbeat.objects.get_or_create(name=name, defaults={"runs": 0, "last_run_at": now})
    Heartbeat.objects.filter(name=name).update(runs=F("runs") + 1, last_run_at=now)
    return Heartbeat.objects.get(name=name)
