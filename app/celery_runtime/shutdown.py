"""Celery's soft shutdown on the gevent pool: https://docs.celeryq.dev/en/stable/userguide/workers.html#soft-shutdown

With REMAP_SIGTERM=SIGQUIT and CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT, `docker stop` gives the running tasks that
long to finish, then cancels the rest, which go back to the queue (acks late) for another worker. Three things
keep Celery's own implementation from working under gevent, and are mended here:

* Python runs a signal handler wherever the main thread happens to be, which in a gevent worker is mostly the
  hub's event loop. Celery's handler waits out the timeout and talks to the broker from inside the handler,
  and inside the hub that raises BlockingSwitchOutError: the worker dies at once, with its tasks. Every
  handler Celery installs is therefore run in a greenlet of its own (what gevent.signal_handler does).
* Celery sleeps the whole timeout whenever a task is running, because under prefork the sleeping main
  process cannot see tasks end. A greenlet can: the wait ends as soon as the running tasks are done, and no
  new task is taken meanwhile (a sleeping prefork main process takes none either).
* The gevent pool reports a cancelled task as a success, so Celery would acknowledge its message and the task
  would be lost. Each unfinished task's message is handed back to the broker first, then its greenlet stopped.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import platforms
from celery.apps.worker import Worker
from celery.worker import state

from celery_runtime.green import gevent_is_patched

logger = logging.getLogger(__name__)

SignalHandler = Callable[[int, Any], Any]


def _in_a_greenlet(handler: SignalHandler) -> SignalHandler:
    @functools.wraps(handler)
    def spawn_handler(signum: int, frame: Any) -> None:
        import gevent

        # Spawning only schedules: safe from any context, the hub's included. A WorkerShutdown or
        # WorkerTerminate the handler raises reaches the main greenlet, as it would have from the handler.
        gevent.spawn(handler, signum, frame)

    return spawn_handler


class GreenletSignals(platforms.Signals):
    """Celery's signal registry, installing each handler so that it runs in a new greenlet."""

    def __setitem__(self, name: int | str, handler: Any) -> None:
        super().__setitem__(name, _in_a_greenlet(handler) if callable(handler) else handler)


class SoftShutdownWorker(Worker):
    """The worker `celery worker` runs: under gevent, signal handlers run in greenlets, and a soft shutdown
    ends when the running tasks do."""

    consumer: Any  # set by Celery's Consumer step

    def install_platform_tweaks(self, worker: Any) -> None:
        if gevent_is_patched():
            # From here on, for the handlers installed now and those that replace them during a shutdown.
            platforms.signals.__class__ = GreenletSignals
        super().install_platform_tweaks(worker)

    def wait_for_soft_shutdown(self) -> None:  # type: ignore[override]  # the stubs say bool; Celery's gives None
        if not gevent_is_patched():
            super().wait_for_soft_shutdown()
            return
        timeout = float(self.app.conf.worker_soft_shutdown_timeout)
        if timeout <= 0 or not (state.active_requests or self.app.conf.worker_enable_soft_shutdown_on_idle):
            return
        consumer = self.consumer
        if consumer.task_consumer:
            consumer.task_consumer.cancel()  # take no new task
        logger.warning(
            "soft shutdown: %d running task(s) have up to %.0f s to finish; then the rest go back to the queue",
            len(state.active_requests),
            timeout,
        )
        deadline = time.monotonic() + timeout
        while state.active_requests and time.monotonic() < deadline:
            time.sleep(0.1)
        if state.active_requests:
            self.requeue_unfinished_tasks()
        else:
            logger.info("soft shutdown: the running tasks finished")

    def requeue_unfinished_tasks(self) -> None:
        for request in tuple(state.active_requests):
            if request.task.acks_late and not request.acknowledged:
                logger.warning("soft shutdown: %s[%s] goes back to the queue", request.name, request.id)
                try:
                    request.reject(requeue=True)
                except Exception:  # the broker is gone: Redis hands the task out again after the visibility timeout
                    logger.exception("soft shutdown: could not requeue %s[%s]", request.name, request.id)
                request.cancel(self.consumer.pool, emit_retry=False)
