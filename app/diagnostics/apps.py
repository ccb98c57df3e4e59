from typing import Any

from django.apps import AppConfig
from django.conf import settings


class DiagnosticsConfig(AppConfig):
    name = "diagnostics"
    verbose_name = "Diagnostics (make bench, make chaos and the worker tests)"

    def ready(self) -> None:
        if settings.DIAGNOSTICS_RUNS_TO:
            from celery.signals import task_success

            task_success.connect(_record_run, weak=False)


def _record_run(sender: Any = None, **kwargs: Any) -> None:
    """Every successful run of every task, as 'task-name task-id' on the DIAGNOSTICS_RUNS_TO list: `make chaos`
    counts runs there, not rows, since a second run of an idempotent task leaves no second row."""
    from diagnostics.services import probe_run_record

    probe_run_record(runs_to=settings.DIAGNOSTICS_RUNS_TO, key=f"{sender.name} {sender.request.id}")
