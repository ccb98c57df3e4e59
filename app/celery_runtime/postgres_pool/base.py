"""django-db-geventpool's backend and pool, with what a gevent worker under load needs mended.

Every change is tested against real Postgres in tests/worker/test_postgres_pool.py.
"""

from __future__ import annotations

import contextlib
import logging
import select
from typing import Any

import gevent
import psycopg2
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import DatabaseWrapper as DjangoDatabaseWrapper
from django_db_geventpool.backends.postgresql_psycopg2 import base as geventpool
from gevent import lock, queue
from psycopg2 import extensions

from celery_runtime import green

logger = logging.getLogger(__name__)


class PoolExhausted(psycopg2.OperationalError):
    """Every connection of the pool stayed in use for the whole wait. An OperationalError, so the task that
    waited is retried later (celery_runtime.retries) as it would be in a database outage, never dropped."""


class BoundedConnectionPool(geventpool.PostgresConnectionPool):
    """django-db-geventpool's pool, changed in three ways.

    * It counted a connection only once connected, and connecting yields to other greenlets: a burst of tasks
      all found the pool below its size and each opened one (50 greenlets on a pool of 5 opened 50). Here a
      greenlet first takes one of `maxsize` slots, then an idle connection or a new one.
    * A greenlet that found the pool full waited for a connection without a limit. Here it waits `timeout`
      seconds at most, then raises PoolExhausted, naming the pool's size.
    * A connection given back inside a transaction was rolled back only when the transaction had not failed;
      one inside a failed transaction went back to the pool as it was. Now either is rolled back, or dropped.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.timeout = float(kwargs.pop("POOL_TIMEOUT"))
        super().__init__(*args, **kwargs)
        self._slots = lock.BoundedSemaphore(self.maxsize)
        # The connections out of the pool, by id: each holds a slot until it is put back.
        self._out: dict[int, Any] = {}

    def free_slots(self) -> int:
        """Slots no connection holds: the pool's size when every connection is back (the tests read it)."""
        return int(self._slots.counter)

    def get(self) -> Any:
        if not self._slots.acquire(timeout=self.timeout):
            message = (
                f"all {self.maxsize} connections of this worker's pool (DJANGO_DB_POOL_SIZE) stayed in use for "
                f"{self.timeout:g}s (DJANGO_DB_POOL_TIMEOUT); tasks hold them for too long, or the pool is too small"
            )
            logger.warning("database pool exhausted: %s", message)
            raise PoolExhausted(message)
        try:
            connection = self._take_idle_or_connect()
        except BaseException:
            self._slots.release()
            raise
        self._out[id(connection)] = connection
        return connection

    def is_out(self, connection: Any) -> bool:
        return self._out.get(id(connection)) is connection

    def _take_idle_or_connect(self) -> Any:
        while True:
            try:
                connection = self.pool.get_nowait()
            except queue.Empty:
                break
            try:
                self.check_usable(connection)
            except self.DBERROR:
                # Broken while it sat idle: Postgres restarted, or the connection was terminated.
                logger.info("dropped a pooled database connection that no longer works; opening another")
                self._drop(connection)
            else:
                return connection
        return self.create_connection()

    def put(self, connection: Any) -> None:
        """Back from the greenlet that had it: idle, to the pool; in a transaction, rolled back first."""
        if self._out.pop(id(connection), None) is not connection:
            return  # given back already (its greenlet ended, then its wrapper was closed)
        try:
            if not connection.closed and connection.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
                with contextlib.suppress(psycopg2.Error):
                    connection.rollback()
            usable = not connection.closed and connection.info.transaction_status == extensions.TRANSACTION_STATUS_IDLE
            if usable:
                self.pool.put_nowait(connection)
            else:
                self._drop(connection)
        finally:
            self._slots.release()

    def _drop(self, connection: Any) -> None:
        with contextlib.suppress(psycopg2.Error):
            connection.close()

    def check_usable(self, connection: Any) -> None:
        """Raises when a pooled connection no longer works, without a round trip for one that does.

        A connection the server closed (a restart, a failover, pg_terminate_backend) has its last message
        waiting on the socket, where a healthy idle one has nothing to read: only then is a query spent on it.
        A peer that vanished without a word is not seen here; the task's first query fails, and it is retried."""
        if connection.closed:
            raise self.DBERROR("the connection is closed")
        readable, _, _ = select.select([connection], [], [], 0)
        if readable:
            super().check_usable(connection)


def pool_fits_this_process() -> bool:
    """The pool is made of gevent's queue and lock: it serves the greenlets of a gevent-patched process only.

    A prefork worker's processes, a threads or solo worker, manage.py: none is patched. There a pool would hand
    one process's open connections to its forked children (one Postgres session shared by several processes),
    or make threads wait on a gevent lock. They use Django's own connection instead, one per thread, closed at
    the end of each task (CONN_MAX_AGE 0) or request; the worker logs that its pool is off (celery_runtime.green).
    """
    return green.gevent_is_patched()


class DatabaseWrapper(geventpool.DatabaseWrapper):
    """django-db-geventpool's backend, on the bounded pool above, in a gevent-patched process only.

    Celery's Django fix-up closes every connection of a task when the task ends, which gives it back here. It
    does so in a `finally` (celery/app/trace.py), so a task that failed, hit its hard time limit (a
    gevent.Timeout) or was revoked gives its connection back too (tests/worker/test_postgres_pool.py).

    A connection opened by any other greenlet (one a task spawns, a signal handler on the consumer's) is not
    closed by Celery: it goes back to the pool when it is closed, or when the greenlet that opened it ends,
    whichever comes first. So a slot lives exactly as long as its connection is in use.

    Elsewhere (pool_fits_this_process) it is Django's PostgreSQL backend, unchanged.

    One change besides the pool: each connection gets Django's per-connection set-up (the time zone), which
    Django skips for a connection that comes from a pool of its own kind.
    """

    pool_class = BoundedConnectionPool
    connection: Any  # psycopg2's connection, or None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pooled = pool_fits_this_process()
        self._greenlet_link: tuple[Any, Any] | None = None
        super().__init__(*args, **kwargs)

    @property
    def pool(self) -> Any:
        # Django's backend reads `pool` as its own (psycopg's): None is "no pool" there.
        return geventpool.DatabaseWrapper.pool.fget(self) if self.pooled else None

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        if not self.pooled:  # the pool's options are not libpq's
            for option in ("MAX_CONNS", "REUSE_CONNS", "POOL_TIMEOUT"):
                params.pop(option, None)
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not self.pooled:
            return DjangoDatabaseWrapper.get_new_connection(self, conn_params)
        connection = super().get_new_connection(conn_params)
        self._give_back_when_greenlet_ends(connection)
        return connection

    def _give_back_when_greenlet_ends(self, connection: Any) -> None:
        owner = gevent.getcurrent()
        if not isinstance(owner, gevent.Greenlet):
            return  # the main greenlet, which ends with the process: the connection goes back when it is closed
        pool = self.pool

        def ended(_greenlet: Any) -> None:
            if pool.is_out(connection):
                # The hub calls this, and giving back may roll back (I/O): a greenlet of its own does it.
                gevent.spawn(pool.put, connection)

        owner.rawlink(ended)
        self._greenlet_link = (owner, ended)

    def init_connection_state(self) -> None:
        super().init_connection_state()
        if self.pooled and self._configure_connection(self.connection) and not self.get_autocommit():
            self.connection.commit()

    def close(self) -> None:
        # Django's own close (the library's skips clearing on-commit callbacks), with _close below.
        BaseDatabaseWrapper.close(self)

    def close_if_unusable_or_obsolete(self) -> None:
        if self.pooled:
            super().close_if_unusable_or_obsolete()
        else:
            DjangoDatabaseWrapper.close_if_unusable_or_obsolete(self)

    def _close(self) -> None:
        if not self.pooled:
            DjangoDatabaseWrapper._close(self)  # type: ignore[attr-defined]  # Django's, undeclared in its stubs
            return
        connection, self.connection = self.connection, None
        if self._greenlet_link is not None:
            owner, ended = self._greenlet_link
            owner.unlink(ended)
            self._greenlet_link = None
        self.pool.put(connection)
