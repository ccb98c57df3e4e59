import uuid

from django.tasks import TaskResult

from config.api import require_database, require_text
from logs.models import Log


def log_create(*, request_id: uuid.UUID, text: str) -> Log:
    """Writes the row once: a redelivered task (acks late) finds the row its first run wrote."""
    log, _created = Log.objects.get_or_create(request_id=request_id, defaults={"text": text})
    return log


def log_enqueue(*, text: object) -> uuid.UUID:
    """Validates the text (BadRequest says why), and has the worker write it once the request's transaction
    commits. Refused (the database error, a 503) when Postgres, where the row goes, cannot be reached now."""
    valid = require_text({"text": text}, "text", max_length=Log._meta.get_field("text").max_length or 255)
    require_database()
    from logs.tasks import log_write_task  # the task module imports these services

    request_id = uuid.uuid4()
    log_write_task.delay_on_commit(str(request_id), valid)  # type: ignore[attr-defined]  # Celery 5.4+, not in the stubs
    return request_id


def log_summarize(*, log: Log) -> dict[str, int]:
    return {"log_id": log.pk, "words": len(log.text.split()), "characters": len(log.text)}


def log_summary_enqueue(*, log: Log) -> TaskResult:
    """Has the worker summarize the log (a django.tasks task): the result row is written now, the message sent
    when the request's transaction commits. Postgres or Redis down: their error, which the web answers with 503."""
    from logs.tasks import log_summarize_task  # the task module imports these services

    return log_summarize_task.enqueue(log_id=log.pk)
