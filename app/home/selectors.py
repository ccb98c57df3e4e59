"""What the landing page shows of the stack: each part asked once, with a short bound, and never raising."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps
from django.db import DatabaseError

from celery_runtime.dead_letters import dead_letter_count
from config.celery_app import app as celery_app
from config.health import dependency_status

# How long the page waits for the workers to answer Celery's `inspect stats` (each answers within milliseconds).
WORKERS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    pool: str  # e.g. "gevent"
    concurrency: int | None
    processed: int


@dataclass(frozen=True)
class PeriodicRun:
    name: str
    runs: int
    last_run_at: datetime


@dataclass(frozen=True)
class StackStatus:
    database: str  # "ok", or what went wrong
    broker: str
    workers: list[WorkerStatus] = field(default_factory=list)
    beat: list[PeriodicRun] = field(default_factory=list)
    dead_letters: int | None = None  # messages the worker set aside (celery_runtime.dead_letters); None: unknown

    @property
    def all_up(self) -> bool:
        return self.database == "ok" and self.broker == "ok" and bool(self.workers)


def _workers() -> list[WorkerStatus]:
    try:
        stats = celery_app.control.inspect(timeout=WORKERS_TIMEOUT_SECONDS).stats() or {}
    except Exception:  # noqa: BLE001 - no broker: no worker can be asked
        return []
    workers = []
    for name, info in sorted(stats.items()):
        pool = info.get("pool", {})
        implementation = str(pool.get("implementation", "?"))
        workers.append(
            WorkerStatus(
                name=name,
                # "celery.concurrency.gevent:TaskPool" -> "gevent"
                pool=implementation.partition(":")[0].rsplit(".", 1)[-1],
                concurrency=pool.get("max-concurrency"),
                processed=sum((info.get("total") or {}).values()),
            )
        )
    return workers


def _beat() -> list[PeriodicRun]:
    # >>> example apps
    if apps.is_installed("heartbeat"):
        return _heartbeats()
    # <<< example apps
    return _periodic_tasks()


def _periodic_tasks() -> list[PeriodicRun]:
    """django-celery-beat's own record of each periodic task; beat saves it every few minutes, so it lags."""
    from django_celery_beat.models import PeriodicTask

    try:
        tasks = PeriodicTask.objects.filter(enabled=True, last_run_at__isnull=False).order_by("name")
        return [PeriodicRun(task.name, task.total_run_count, task.last_run_at) for task in tasks]
    except DatabaseError:  # shown as down already
        return []


# >>> example apps
def _heartbeats() -> list[PeriodicRun]:
    from heartbeat.selectors import heartbeat_list

    try:
        return [PeriodicRun(beat.name, beat.runs, beat.last_run_at) for beat in heartbeat_list()]
    except Exception:  # noqa: BLE001 - the database row is shown as down already
        return []


# <<< example apps


def _dead_letters() -> int | None:
    try:
        return dead_letter_count()
    except Exception:  # noqa: BLE001 - the broker row says why
        return None


def stack_status_get() -> StackStatus:
    checks = dependency_status()
    database, broker = checks["database"], checks["broker"]
    return StackStatus(
        database=database,
        broker=broker,
        workers=_workers() if broker == "ok" else [],
        beat=_beat() if database == "ok" else [],
        dead_letters=_dead_letters() if broker == "ok" else None,
    )
