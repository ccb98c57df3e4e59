"""Beat's scheduler: django-celery-beat's DatabaseScheduler, plus a liveness file for the healthcheck."""

from typing import Any

from django_celery_beat.schedulers import DatabaseScheduler

from celery_runtime.probes import BEAT_LIVENESS_FILE


class LivenessDatabaseScheduler(DatabaseScheduler):
    """Touches beat's liveness file on every tick of its loop (at least every few seconds)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        BEAT_LIVENESS_FILE.touch()
        return float(super().tick(*args, **kwargs))
