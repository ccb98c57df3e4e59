from dataclasses import dataclass
from typing import Any

from celery import states

from config.celery_app import app as celery_app


@dataclass(frozen=True)
class TaskOutcome:
    state: str  # PENDING also covers an id nobody enqueued
    ready: bool
    result: Any
    error: str | None


def task_outcome_get(*, task_id: str) -> TaskOutcome:
    """What the result backend holds for a task, read once: state, result and error from the same row (reading
    AsyncResult's properties one by one could give a PENDING state beside the finished result)."""
    meta = celery_app.backend.get_task_meta(task_id)
    state = meta["status"]
    failed = state in states.PROPAGATE_STATES
    return TaskOutcome(
        state=state,
        ready=state in states.READY_STATES,
        result=None if failed else meta["result"],
        error=repr(meta["result"]) if failed else None,
    )
