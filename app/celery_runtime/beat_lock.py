"""Exactly one beat in the whole deployment: a Postgres advisory lock that beat holds for as long as it runs.

Two beats would send every periodic task twice. A lock file works on one host only; this lock lives in the
database that every beat already needs (django-celery-beat's schedule), so it holds across the nodes of a
Swarm or a Kubernetes cluster. beat_scheduler takes it before anything is sent, and checks it on every tick.

* Session-level: `pg_try_advisory_lock(LOCK_KEY)` on a connection of its own (application_name `beat-lock`),
  in autocommit, kept open for beat's lifetime. Django's own connection would not do: Django and
  django-celery-beat close it between ticks, and the lock would go with it. Postgres releases the lock when
  the session ends, however it ends: beat stops or is killed, Postgres restarts, the connection is cut, or
  beat's node vanishes (the server's TCP keepalives, set below, end that session within about 25 s).
* LOCK_KEY is the first 8 bytes of SHA-256(LOCK_NAME) as a signed 64-bit integer: -2324287977798058640, which
  pg_locks shows as locktype advisory, classid 3753801830, objid 396541296, objsubid 1. Never change it: during
  a rolling update the old beat and the new one must compete for the same lock. Advisory locks are per
  database, so stacks with a database each may share one Postgres server.
* The holder must know it has lost the lock before anyone else can take it. A session that Postgres ended
  (restart, pg_terminate_backend) leaves its last message on the socket, seen by `check` without a round
  trip. One whose peer went silent is not, so `check` also makes a round trip when the last one is
  CHECK_EVERY_SECONDS old (a round trip to a silent peer fails within TCP_USER_TIMEOUT_MS). The scheduler
  checks before each task it sends, so it sends nothing later than 5 s after its last contact with Postgres,
  long before the server gives a silent session up (about 25 s) and another beat can take the lock.
* The connection must reach a Postgres session of its own: directly, or through PgBouncer in session mode.
  In transaction mode the lock would stay on a server connection that other clients are then given.
"""

from __future__ import annotations

import hashlib
import logging
import select
import time
from typing import Any

import psycopg2
from django.conf import settings

logger = logging.getLogger(__name__)

LOCK_NAME = "celery_runtime.beat_lock"
LOCK_KEY = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
# Who holds the lock: SELECT pid, client_addr, backend_start FROM pg_stat_activity WHERE application_name = 'beat-lock'
APPLICATION_NAME = "beat-lock"
CONNECT_TIMEOUT_SECONDS = 2  # libpq's least
CHECK_EVERY_SECONDS = 5.0
TCP_USER_TIMEOUT_MS = 5000
# The server side: a session whose client went silent ends (and the lock with it) after about 10 + 3 x 5 s. An
# idle_session_timeout set for the database or role would end the idle lock session over and over: not here.
SERVER_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c idle_session_timeout=0"
)
# Keys of DATABASES[...]["OPTIONS"] that Django's backend or the worker's pool use themselves, not libpq.
NOT_FOR_LIBPQ = {"assume_role", "isolation_level", "pool", "server_side_binding", "cursor_factory"}


def connection_params(settings_dict: dict[str, Any] | None = None) -> dict[str, Any]:
    """psycopg2.connect's arguments for the lock's own connection, from a DATABASES entry (the default one)."""
    settings_dict = settings.DATABASES["default"] if settings_dict is None else settings_dict
    options = {
        name: value
        for name, value in (settings_dict.get("OPTIONS") or {}).items()
        if name not in NOT_FOR_LIBPQ and name.islower()  # the pool's MAX_CONNS, POOL_TIMEOUT: not libpq's
    }
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME"),
        "user": settings_dict.get("USER"),
        "password": settings_dict.get("PASSWORD"),
        "host": settings_dict.get("HOST"),
        "port": settings_dict.get("PORT"),
    }
    params = {name: value for name, value in params.items() if value not in (None, "")}
    params.update(options)
    params.update(
        application_name=APPLICATION_NAME,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        # The client side: a round trip to a peer that went silent fails within TCP_USER_TIMEOUT_MS.
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=2,
        tcp_user_timeout=TCP_USER_TIMEOUT_MS,
        options=f"{options.get('options', '')} {SERVER_OPTIONS}".strip(),
    )
    return params


class BeatLock:
    """The advisory lock and the connection whose session holds it. Not thread-safe: beat's loop only."""

    def __init__(self, params: dict[str, Any] | None = None, key: int = LOCK_KEY) -> None:
        self.params = connection_params() if params is None else params
        self.key = key
        self._connection: Any = None
        self._confirmed_at = 0.0  # monotonic time of the last round trip that showed the session alive

    @property
    def backend_pid(self) -> int | None:
        """The Postgres backend whose session holds the lock, or None when this process holds none."""
        return None if self._connection is None else int(self._connection.get_backend_pid())

    def acquire(self) -> bool:
        """Takes the lock, on a new connection unless the current one still holds it. False: another session
        holds it. Raises psycopg2.Error when Postgres cannot be reached."""
        if self.check():
            return True
        self.release()
        connection = psycopg2.connect(**self.params)
        try:
            connection.autocommit = True  # never idle in a transaction, which a timeout could end
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.key])
                acquired = bool(cursor.fetchone()[0])
        except BaseException:
            connection.close()
            raise
        if not acquired:
            connection.close()
            return False
        self._connection = connection
        self._confirmed_at = time.monotonic()
        return True

    def check(self) -> bool:
        """Whether this process still holds the lock, as far as Postgres can be asked cheaply: a round trip when
        the socket has something to read (the server's goodbye) or the last one is CHECK_EVERY_SECONDS old,
        otherwise a look at the socket only. A lost session is closed here; `acquire` tries again."""
        connection = self._connection
        if connection is None:
            return False
        try:
            if connection.closed:
                raise psycopg2.InterfaceError("the connection is closed")
            stale = time.monotonic() - self._confirmed_at >= CHECK_EVERY_SECONDS
            if stale or select.select([connection], [], [], 0)[0]:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                self._confirmed_at = time.monotonic()
        except psycopg2.Error as exc:
            logger.warning("beat lock: the session that held the lock is gone: %s", " ".join(str(exc).split()))
            self._discard()
            return False
        return True

    def release(self) -> None:
        """Gives the lock up at once, then closes the connection. Closing alone would release it too, but only
        when the server has ended the session, a moment later: a beat started right after this one stops (an
        update, stop-first) would find it still taken."""
        connection = self._connection
        if connection is not None and not connection.closed:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            except psycopg2.Error:
                pass  # the session is gone, and the lock with it
        self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()  # psycopg2 closes a broken connection without raising
