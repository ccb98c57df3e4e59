import logging

from celery import shared_task

from heartbeat.services import heartbeat_record

logger = logging.getLogger(__name__)


# Scheduled by beat (CELERY_BEAT_SCHEDULE). expires: a run that waited longer than its period is stale.
@shared_task(expires=30)
def heartbeat_record_task() -> None:
    beat = heartbeat_record(name="beat")
    logger.info("heartbeat %s recorded (run %s)", beat.name, beat.runs)
