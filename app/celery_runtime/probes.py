"""Liveness files for the worker's and beat's container healthchecks.

A healthcheck that runs `celery inspect ping` starts a whole Django process (seconds of CPU) and asks
every worker through the broker. Instead each process touches a file while it is doing its job, and the
healthcheck only compares the file's age with the clock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import bootsteps
from django.conf import settings

from celery_runtime.timers import Repeating

# The compose healthchecks read these paths (the worker's: each of its processes has one, see start-worker).
BEAT_LIVENESS_FILE = Path("/tmp/celery-beat-alive")
TOUCH_EVERY_SECONDS = 5.0


def mark_stale(path: Path) -> None:
    """The file exists but says "not alive": a healthcheck that wants every worker process's file fresh then
    waits for this one, where a missing file would go unnoticed."""
    path.touch()
    os.utime(path, (0, 0))


class ConsumerLiveness(bootsteps.StartStopStep):
    """Touches the worker's file while its consumer is connected to the broker and its event loop runs."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Repeating | None = None
        self.path = Path(settings.WORKER_LIVENESS_FILE)
        mark_stale(self.path)  # a file left by a previous run proves nothing

    def start(self, parent: Any) -> None:
        self.path.touch()
        self._timer_entry = Repeating(parent.timer, TOUCH_EVERY_SECONDS, self.path.touch)

    def stop(self, parent: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
        mark_stale(self.path)

    shutdown = stop
