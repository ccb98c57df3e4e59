"""Hands a dead worker's unacknowledged messages back to the queue, on the gevent pool too.

With acks late on Redis, a message a worker has taken (running, or prefetched) waits in kombu's `unacked` hash
until the worker acknowledges it. A worker that dies without closing its channel (SIGKILL, the OOM killer, a
lost node) leaves its messages there; kombu's `restore_visible` moves back to the queue every message older than
`visibility_timeout`, and only those, so a live worker's messages are not handed out early.

kombu runs that sweep by itself only where it has an event loop (prefork, solo): every
`unacked_restore_interval` x `unacked_restore_throttle` seconds. The gevent pool consumes through Celery's
synchronous loop instead, where kombu sweeps only after a poll that returned no event at all; a BRPOP that
times out on an idle queue is an event, so the sweep never runs and a dead worker's messages stay unacked for
good. This step drives kombu's own `restore_visible` from the worker's timer, every `unacked_restore_interval`
seconds (a transport option, default 10), scanning each time: a dead worker's messages come back within
`visibility_timeout` + `unacked_restore_interval`. kombu's mutex keeps concurrent sweeps of several workers
from restoring a message twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)


class UnackedRedeliverySweep(bootsteps.StartStopStep):
    """Every `unacked_restore_interval` seconds, restores the messages whose visibility timeout has passed."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Any = None

    def start(self, parent: Any) -> None:
        channel = parent.task_consumer.channel
        if parent.hub is not None or not hasattr(getattr(channel, "qos", None), "restore_visible"):
            return  # kombu sweeps by itself in an event loop; other brokers redeliver without a sweep
        restore_limit = channel.unacked_restore_limit

        def sweep() -> None:
            try:
                with channel.conn_or_acquire() as client:
                    due = client.zcount(channel.unacked_index_key, "-inf", time.time() - channel.visibility_timeout)
                if due:
                    logger.warning(
                        "redelivery sweep: %d message(s) unacknowledged for too long go back to the queue", due
                    )
                    # interval=1: scan on this call; the timer is what spaces the sweeps.
                    channel.qos.restore_visible(num=restore_limit, interval=1)
            except channel.connection_errors as exc:
                # The broker is away: the consumer reconnects and this step starts again with the new channel.
                logger.debug("redelivery sweep skipped: %r", exc)

        interval = float(channel.unacked_restore_interval)
        self._timer_entry = parent.timer.call_repeatedly(interval, sweep)
        logger.info(
            "redelivery sweep: messages unacknowledged for over %ss go back to the queue, checked every %ss",
            channel.visibility_timeout,
            interval,
        )

    def stop(self, parent: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    shutdown = stop
