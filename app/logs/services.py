import uuid

from logs.models import Log


def log_create(*, request_id: uuid.UUID, text: str) -> Log:
    """Writes the row once: a redelivered task (acks late) finds the row its first run wrote."""
    log, _created = Log.objects.get_or_create(request_id=request_id, defaults={"text": text})
    return log
