"""The Celery application: https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html"""

import logging
import os
from functools import cached_property
from typing import Any

from celery import Celery, bootsteps

from config import green
from config.probes import ConsumerLiveness

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# Under `-P gevent` Celery has monkey-patched by now; psycopg2 must yield to the hub before anything connects.
green.make_psycopg2_cooperative()


class CeleryApp(Celery):
    @cached_property
    def Worker(self) -> Any:
        # Soft shutdown that works on the gevent pool; imported by `celery worker` only.
        from config.worker_shutdown import SoftShutdownWorker

        return self.subclass_with_self(SoftShutdownWorker)


app = CeleryApp("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


class DatabaseReadiness(bootsteps.Step):
    """Runs once the pool and concurrency are known, before the worker consumes anything."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        green.check_worker_database_setup(worker)


app.steps["worker"].add(DatabaseReadiness)
app.steps["consumer"].add(ConsumerLiveness)


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
