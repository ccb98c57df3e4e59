"""Keeps this worker's messages its own while it lives, and hands a dead worker's back to their queues.

With acks late on Redis, a message a worker has taken (running, or prefetched, or a countdown task it holds)
stays recorded as unacknowledged and owned by the worker until it is acknowledged (celery_runtime.transport).
This step, on the worker's timer (Celery's synchronous loop on the gevent pool, the event loop on prefork):
* beats for the worker's consumer channel every fifth of `worker_liveness_timeout` (a transport option, default
  15 s), so no other worker takes it for dead, however long its tasks wait or run, until the channel closes: on
  through a shutdown's wait for the running tasks; a channel closed at a reconnect (Redis restarted) falls
  silent, and what it held and could not give back as it closed comes back within the liveness plus one sweep;
* every `unacked_restore_interval` seconds (default 5) gives back the messages of owners silent for longer than
  the liveness, to the head of their queues, or to the dead letters after `delivery_limit` deaths.
A worker that dies (SIGKILL, the OOM killer, a lost node) has its messages back within the liveness plus one
sweep period: 20 s on the defaults. The sweep is one script Redis runs atomically: several workers sweeping at
once give each message back once, and a worker killed mid-sweep leaves nothing half done (kombu's sweep takes a
Redis lock that a worker killed while holding it kept for 5 minutes, stopping every sweep meanwhile).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from celery import bootsteps
from celery.signals import task_prerun

from celery_runtime.timers import Repeating

logger = logging.getLogger(__name__)


class UnackedRedeliverySweep(bootsteps.StartStopStep):
    """The consumer channel's heartbeat, and the sweep of dead workers' messages."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    # This process's consumer QoS while the step runs: send_early_acks sends its batched acks.
    consumer_qos: ClassVar[Any] = None

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._sweeping: Repeating | None = None

    def start(self, parent: Any) -> None:
        channel = parent.task_consumer.channel
        qos: Any = getattr(channel, "qos", None)
        if not hasattr(qos, "restore_dead_owners"):
            return  # another transport: its broker redelivers by itself

        UnackedRedeliverySweep.consumer_qos = qos
        beating: Repeating | None = None

        def beat() -> None:
            try:
                # Closed: its tasks are done or given back; a reconnect's new channel beats for its own.
                if not qos.heartbeat() and beating is not None:
                    beating.cancel()
            except channel.connection_errors as exc:
                # The broker is away: the consumer reconnects and this step starts again with the new channel.
                logger.debug("heartbeat skipped: %r", exc)

        def sweep() -> None:
            try:
                qos.restore_dead_owners()
            except channel.connection_errors as exc:
                logger.debug("redelivery sweep skipped: %r", exc)

        beat()
        liveness = float(channel.worker_liveness_timeout)
        interval = float(channel.unacked_restore_interval)
        beating = Repeating(parent.timer, liveness / 5, beat)
        self._sweeping = Repeating(parent.timer, interval, sweep)
        logger.info(
            "redelivery: this worker beats every %ss; the messages of workers silent for over %ss go back to their "
            "queues, checked every %ss; set aside after %d deaths",
            liveness / 5,
            liveness,
            interval,
            channel.delivery_limit,
        )

    def stop(self, parent: Any) -> None:
        """Stops the sweep. The heartbeat goes on until the channel closes: a warm or soft shutdown stops the
        consumer first, then waits for the running tasks, which must stay this worker's meanwhile (stopped at once,
        a task running past the liveness was handed to another worker and ran twice: test_ownership)."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None

    shutdown = stop


@task_prerun.connect
def send_early_acks(sender: Any = None, **kwargs: Any) -> None:
    """A task acknowledged before it runs (`acks_late=False`) has its ack in Redis before its body starts. Acks
    reach Redis in batches, up to 5 ms later (celery_runtime.transport): a body that ended its process sooner
    (`process_exit_task`, a segfault) left its message recorded as the dead worker's, and the sweep delivered it
    again, at most once promised and twice run, killing a worker each time until it was set aside (make
    prod-smoke's worker restarted three times; test_ownership). A task acknowledged late pays nothing here."""
    qos = UnackedRedeliverySweep.consumer_qos
    if qos is None or sender is None or getattr(sender, "acks_late", True):
        return
    try:
        qos.forget_acknowledged()
    except Exception as exc:  # noqa: BLE001 - the task runs all the same; only a death within 5 ms repeats it
        logger.warning("could not send the acknowledgement of %s before it runs: %s", sender.name, exc)
