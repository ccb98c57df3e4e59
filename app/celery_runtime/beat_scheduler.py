"""Beat's scheduler: django-celery-beat's DatabaseScheduler, held to one beat by the beat lock, with a liveness file.

Exactly one beat may run in the whole deployment, whatever the hosts (celery_runtime.beat_lock):

* At start, before anything is sent, beat takes the lock. If another beat holds it, it logs "another beat holds
  the beat lock" and exits 1; the restart policy tries again later, and should the holder die, its lock goes
  with its session and the next attempt wins. A Postgres that cannot be reached at start is an exit 1 too (the
  entrypoint has just waited for it).
* On every tick, and again before each task it sends, beat checks that its session still holds the lock. A lost
  session (Postgres restarted, the connection cut) is a lost lock: beat sends nothing and tries to take the lock
  again every RETRY_SECONDS, sending again as soon as it holds it. If another beat took it meanwhile, beat exits
  1 with the same message.
* The liveness file is touched on every tick, also while beat waits for Postgres to give the lock back: its
  loop runs and does the right thing, and a restart would only bring it back to the same wait, later (in
  Kubernetes after a crash-loop back-off, which would delay the recovery). Whether beat sends is in its log.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

import psycopg2
from django_celery_beat.schedulers import DatabaseScheduler

from celery_runtime.beat_lock import LOCK_KEY, BeatLock
from celery_runtime.probes import BEAT_LIVENESS_FILE

logger = logging.getLogger(__name__)

RETRY_SECONDS = 2.0  # between attempts to take the lock again, while beat does not hold it
WARN_EVERY_SECONDS = 30.0  # at most one warning per this while Postgres cannot be reached


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class LivenessDatabaseScheduler(DatabaseScheduler):
    """Sends only while it holds the beat lock; touches beat's liveness file on every tick (every few seconds)."""

    lock: BeatLock | None = None
    _exit_code = 0
    _lost_at: float | None = None
    _warned_at = float("-inf")

    def setup_schedule(self) -> None:
        # Not called for the throwaway scheduler that `celery beat` builds (lazy) for its banner.
        lock = BeatLock()
        try:
            acquired = lock.acquire()
        except psycopg2.Error as exc:
            logger.error("beat: Postgres cannot be reached to take the beat lock, so beat exits: %s", _one_line(exc))
            raise SystemExit(1) from None
        if not acquired:
            self._another_beat_holds_the_lock()
        self.lock = lock
        logger.info(
            "beat: holds the beat lock (Postgres backend %s); the one beat sending periodic tasks", lock.backend_pid
        )
        super().setup_schedule()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        BEAT_LIVENESS_FILE.touch()
        if not self.holds_lock():
            return min(RETRY_SECONDS, float(self.max_interval))
        return float(super().tick(*args, **kwargs))

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        # The tick checked the lock, but its schedule queries may have waited on an unreachable Postgres since.
        if self.lock is None or not self.lock.check():
            logger.warning("beat: %s not sent (this run is skipped): beat no longer holds the beat lock", entry.name)
            return
        super().apply_entry(entry, producer=producer)

    def holds_lock(self) -> bool:
        """Whether beat holds the lock, taking it again if its session was lost. Exits if another beat has it."""
        if self.lock is None:
            self.lock = BeatLock()
        if self.lock.check():
            return True
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            logger.warning("beat: lost the beat lock; sending no periodic task until it holds it again")
        try:
            acquired = self.lock.acquire()
        except psycopg2.Error as exc:
            if time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = time.monotonic()
                logger.warning(
                    "beat: Postgres cannot be reached to take the beat lock again; trying every %gs: %s",
                    RETRY_SECONDS,
                    _one_line(exc),
                )
            return False
        if not acquired:
            self._another_beat_holds_the_lock()
        logger.info(
            "beat: holds the beat lock again (Postgres backend %s) after %.0fs; sending periodic tasks again",
            self.lock.backend_pid,
            time.monotonic() - self._lost_at,
        )
        self._lost_at = None
        self._warned_at = float("-inf")
        return True

    def _another_beat_holds_the_lock(self) -> NoReturn:
        logger.error(
            "beat: another beat holds the beat lock (Postgres advisory lock %s); exactly one beat may run, so "
            "this one exits",
            LOCK_KEY,
        )
        self._exit_code = 1
        # Celery's beat loop (Service.start) takes a SystemExit raised in a tick for a clean stop, exit status 0,
        # and then calls close(): close raises it again, with this status, once the schedule is saved.
        raise SystemExit(1)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.lock is not None:
                self.lock.release()
        if self._exit_code:
            raise SystemExit(self._exit_code)
