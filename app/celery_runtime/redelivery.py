"""Keeps this worker's messages its own while it lives, and hands a dead worker's back to their queues.

With acks late on Redis, a message a worker has taken (running, or prefetched, or a countdown task it holds)
stays recorded as unacknowledged and owned by the worker until it is acknowledged (celery_runtime.transport).
This step:
* beats for the worker's consumer channel every fifth of `worker_liveness_timeout` (a transport option, default
  15 s), from a native thread with a Redis connection of its own (Heartbeat), so no other worker takes it for
  dead, however long its tasks wait or run, and whatever they do to the worker's event loop: a task that holds
  the CPU without yielding stops a gevent worker's hub (and a solo worker's loop) for as long as it runs, and a
  heartbeat on the worker's timer fell silent with it (a 30 s CPU-bound task ran 4 times in 90 s, and the 20
  countdown tasks its worker held ran twice). The thread beats while the hub has run within the task time limit
  plus the liveness: a hub stuck for longer than any task may run is a dead worker, and its messages come back.
  It beats on through a shutdown's wait for the running tasks, until the channel closes; a channel closed at a
  reconnect (Redis restarted) falls silent, and what it held and could not give back as it closed comes back
  within the liveness plus one sweep;
* every `unacked_restore_interval` seconds (default 5), on the worker's timer, gives back what this process could
  not give back earlier (a requeue, or a message taken and not delivered, that met a broken connection: no death
  counted), then the messages of
  owners silent for longer than the liveness, to the head of their queues, or to the dead letters after
  `delivery_limit` deaths. Silence is counted only while Redis serves: a stall that silenced every worker (Redis
  paused, a fork or an fsync stall, a failover) is no one's death (the transport's UNSTALL_FUNCTION).
A worker that dies (SIGKILL, the OOM killer, a lost node) has its messages back within the liveness plus one
sweep period: 20 s on the defaults. The sweep is one script Redis runs atomically: several workers sweeping at
once give each message back once, and a worker killed mid-sweep leaves nothing half done (kombu's sweep takes a
Redis lock that a worker killed while holding it kept for 5 minutes, stopping every sweep meanwhile).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, ClassVar

from celery import bootsteps
from celery.signals import task_prerun

from celery_runtime.timers import Repeating

logger = logging.getLogger(__name__)

# How often the worker's hub (its timer) says it runs: the heartbeat thread's evidence that the worker is not stuck.
HUB_TICK_SECONDS = 1.0


def _native_thread_tools() -> tuple[Any, Any]:
    """`start_new_thread` and `sleep` that are the operating system's, also where gevent has patched them: the
    heartbeat must run while a task keeps the hub from switching. gevent gives such a thread a hub of its own for the
    sockets it opens (gevent's documentation, "Threads": a hub per native thread)."""
    try:
        from gevent import monkey
    except ImportError:  # no gevent: the standard library's are native
        import _thread

        return _thread.start_new_thread, time.sleep
    return monkey.get_original("_thread", "start_new_thread"), monkey.get_original("time", "sleep")


class Heartbeat:
    """Beats for one consumer channel from a native thread, over a Redis connection of its own, while the channel is
    open and the worker's hub has ticked (`hub_ran`) within `stall_limit` seconds (None: no limit).

    The thread logs nothing itself: logging's handlers hold locks that gevent patched, made for greenlets of the hub's
    thread, and the worker writes to Celery's redirected stderr (a gevent monitor thread's reports there had a worker
    stop consuming for good: docs/reliability.md). Its records wait for the hub's next tick (`hub_ran`), which logs
    them; the one the hub may never see again, that it stopped beating, also goes straight to the process's stderr."""

    def __init__(self, qos: Any, *, period: float, stall_limit: float | None) -> None:
        self.qos = qos
        self.period = period
        self.stall_limit = stall_limit
        self.hub_seen = time.monotonic()
        self._client: Any = None
        self._stuck_logged = False
        self._records: list[tuple[Any, ...]] = []  # (level, message, *args), appended by the thread only
        self._start_new_thread, self._sleep = _native_thread_tools()

    def start(self) -> None:
        # Made here, not in the thread: redis-py reads its version through importlib the first time, and an import
        # in a native thread under gevent can deadlock with the hub's own.
        self._client = self._make_client()
        self._start_new_thread(self._run, ())

    def _make_client(self) -> Any:
        """A client on one connection of its own, with the channel's connection settings (RESP2: a plain script
        reply whatever the channel speaks; no maintenance notifications, which want RESP3)."""
        import redis
        from redis.sentinel import Sentinel, SentinelConnectionPool

        channel = self.qos.channel
        pool = channel.pool
        options = {
            key: value
            for key, value in pool.connection_kwargs.items()
            if not key.startswith("maint") and key != "connection_pool"
        }
        options["protocol"] = 2
        own_pool: redis.ConnectionPool
        if isinstance(pool, SentinelConnectionPool):
            # The primary that Sentinel names, asked of Sentinels through connections of its own too: the channel's
            # Sentinel clients belong to the worker's hub.
            manager = pool.sentinel_manager
            sentinels = [
                (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
                for s in manager.sentinels
            ]
            own_manager = Sentinel(  # type: ignore[no-untyped-call]
                sentinels,
                min_other_sentinels=manager.min_other_sentinels,
                sentinel_kwargs=manager.sentinel_kwargs,
                **manager.connection_kwargs,
            )
            own_pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
                pool.service_name,
                own_manager,
                connection_class=pool.connection_class,
                max_connections=1,
                **options,
            )
        else:
            own_pool = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **options)
        return channel.Client(connection_pool=own_pool)

    def hub_ran(self) -> None:
        """The hub's tick: it runs; and what the thread had to say is logged from here."""
        self.hub_seen = time.monotonic()
        while self._records:
            level, message, *args = self._records.pop(0)
            logger.log(level, message, *args)

    def _log(self, level: int, message: str, *args: Any) -> None:
        self._records.append((level, message, *args))

    def _run(self) -> None:
        # One wake per period: each wake takes the GIL from a busy worker. A beat due after the channel closed does
        # not happen (QoS.heartbeat checks), so a stop waits for nothing.
        try:
            while self._beat():
                self._sleep(self.period)
        finally:
            self._close()

    def _beat(self) -> bool:
        """False once the channel is closed: its beats are over."""
        stuck = time.monotonic() - self.hub_seen
        if self.stall_limit is not None and stuck > self.stall_limit:
            if not self._stuck_logged:
                self._stuck_logged = True
                message = (
                    f"the worker's event loop has not run for {stuck:.0f}s, past the task time limit: this worker "
                    "stops beating, and the messages it holds go to other workers (a task stuck without yielding?)"
                )
                self._log(logging.ERROR, message)
                with contextlib.suppress(OSError):
                    os.write(2, f"ERROR celery_runtime.redelivery: {message}\n".encode())
            return True
        self._stuck_logged = False
        try:
            if not self.qos.heartbeat(self._client, self._log):
                return False
        except Exception as exc:  # noqa: BLE001 - a thread of its own: Redis away, try again next period
            self._log(logging.DEBUG, "heartbeat skipped: %r", exc)
            self._client.connection_pool.disconnect()
        return True

    def _close(self) -> None:
        try:
            self._client.connection_pool.disconnect()
        except Exception as exc:  # noqa: BLE001 - the thread ends all the same
            self._log(logging.DEBUG, "heartbeat connection not closed cleanly: %r", exc)


class UnackedRedeliverySweep(bootsteps.StartStopStep):
    """The consumer channel's heartbeat, and the sweep of dead workers' messages."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    # This process's consumer QoS while the step runs: send_early_acks sends its batched acks.
    consumer_qos: ClassVar[Any] = None

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._sweeping: Repeating | None = None
        self._hub_ticks: Repeating | None = None

    def start(self, parent: Any) -> None:
        channel = parent.task_consumer.channel
        qos: Any = getattr(channel, "qos", None)
        if not hasattr(qos, "restore_dead_owners"):
            return  # another transport: its broker redelivers by itself

        UnackedRedeliverySweep.consumer_qos = qos

        def sweep() -> None:
            try:
                qos.retry_give_backs()  # this process's own, first: no death counted for them
                qos.restore_dead_owners()
            except channel.connection_errors as exc:
                logger.debug("redelivery sweep skipped: %r", exc)

        liveness = float(channel.worker_liveness_timeout)
        interval = float(channel.unacked_restore_interval)
        time_limit = parent.app.conf.task_time_limit
        stall_limit = float(time_limit) + liveness if time_limit else None
        heartbeat = Heartbeat(qos, period=liveness / 5, stall_limit=stall_limit)
        heartbeat.start()
        # The previous channel's heartbeat (a reconnect) ends by itself as that channel closes; its hub ticks stop.
        if self._hub_ticks is not None:
            self._hub_ticks.cancel()
        self._hub_ticks = Repeating(parent.timer, HUB_TICK_SECONDS, heartbeat.hub_ran)
        self._sweeping = Repeating(parent.timer, interval, sweep)
        logger.info(
            "redelivery: this worker beats every %ss from a thread of its own (while its event loop has run within "
            "%s); the messages of workers silent for over %ss go back to their queues, checked every %ss; set "
            "aside after %d deaths",
            liveness / 5,
            f"{stall_limit:g}s" if stall_limit is not None else "any time",
            liveness,
            interval,
            channel.delivery_limit,
        )

    def stop(self, parent: Any) -> None:
        """Stops the sweep. The heartbeat goes on until the channel closes, and the hub ticks with it: a warm or soft
        shutdown stops the consumer first, then waits for the running tasks, which must stay this worker's meanwhile
        (stopped at once, a task running past the liveness was handed to another worker and ran twice:
        test_ownership)."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        if self._hub_ticks is not None:
            self._hub_ticks.cancel()
            self._hub_ticks = None


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
