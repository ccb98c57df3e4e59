"""A bare Celery app, no Django and Celery's own defaults: the baseline `make bench` holds the template to.

Its no-op task reports completion exactly as the template's diagnostics.noop_task does.
"""

import os
import time

import redis
from celery import Celery

app = Celery("bare", broker=os.environ["CELERY_BROKER_URL"])
app.conf.worker_hijack_root_logger = False
_report_client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])


@app.task(name="diagnostics.tasks.noop_task")
def noop_task(report_to: str | None = None, sent_at: float | None = None) -> None:
    if report_to:
        _report_client.rpush(report_to, f"{sent_at or 0.0} {time.time()}")
