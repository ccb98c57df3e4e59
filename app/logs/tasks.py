import logging
import uuid

from celery import shared_task

from logs.services import log_create

logger = logging.getLogger(__name__)


@shared_task
def log_write_task(request_id: str, text: str) -> None:
    log = log_create(request_id=uuid.UUID(request_id), text=text)
    logger.info("log %s written for request %s", log.pk, request_id)
