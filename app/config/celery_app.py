"""The Celery application: https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html

What keeps its worker reliable on the gevent pool lives in the celery_runtime package."""

import logging
import os
from functools import cached_property
from typing import Any

from celery import Celery

import celery_runtime
from celery_runtime import green

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Under `-P gevent` Celery has monkey-patched by now; psycopg2 must yield to the hub before anything connects.
green.make_psycopg2_cooperative()


class CeleryApp(Celery):
    @cached_property
    def Worker(self) -> Any:
        # Soft shutdown that works on the gevent pool; imported by `celery worker` only.
        from celery_runtime.shutdown import SoftShutdownWorker

        return self.subclass_with_self(SoftShutdownWorker)


# Every task of the project retries transient database errors (celery_runtime.retries).
app = CeleryApp("config", task_cls="celery_runtime.retries:RetryingTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
celery_runtime.install(app)

logger = logging.getLogger(__name__)


@app.task(bind=True, ignore_result=False)
def debug_task(self: Any) -> dict[str, Any]:
    """Logs the request it was given (POST /tasks/debug/, or `debug_task.delay()` from `make shell`), and
    returns its outline, so the result shows in the admin and at /tasks/<id>/."""
    logger.info("debug_task request: %r", self.request)
    return {
        "id": self.request.id,
        "hostname": self.request.hostname,
        "retries": self.request.retries,
        "delivery_info": self.request.delivery_info,
    }
