"""A bare Celery app, no Django and Celery's own defaults: the baseline `make bench` holds the template to.

Its no-op task reports completion exactly as the template's diagnostics.noop_task does.
"""

import os
import time

import redis
from celery import Celery

from diagnostics.reports import BatchedReports

app = Celery("bare", broker=os.environ["CELERY_BROKER_URL"])
app.conf.worker_hijack_root_logger = False
_report_client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
_batched_reports = BatchedReports(_report_client)


@app.task(name="diagnostics.tasks.noop_task")
def noop_task(report_to: str | None = None, sent_at: float | None = None, report_batched: bool = False) -> None:
    if report_to and report_batched:
        _batched_reports.add(report_to, sent_at or 0.0)
    elif report_to:
        _report_client.rpush(report_to, f"{sent_at or 0.0} {time.time()}")
