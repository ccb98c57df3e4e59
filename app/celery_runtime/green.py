"""The Django ORM under gevent: cooperative, greenlet-local connections, and a bounded connection count.

Celery's `-P gevent` monkey-patches the standard library before it imports this project. From then on
`threading.local` is greenlet-local, so Django keeps one DatabaseWrapper per greenlet (per task), which is
what makes ORM writes from the worker correct. Two things are still needed and are done here:

* psycopg2 is a C extension that waits on its socket itself, outside gevent: each query would block the
  whole worker. psycogreen's wait callback yields to the gevent hub instead (and, here, cancels the query in
  Postgres when the task is interrupted while it waits).
* the workers' connections (their pools, celery_runtime.postgres_pool) must fit in Postgres's max_connections
  beside the web's; the worker checks this before it consumes anything.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from celery import bootsteps

from config.env import env

logger = logging.getLogger(__name__)

_cooperative = False


def gevent_is_patched() -> bool:
    if "gevent.monkey" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


def make_psycopg2_cooperative() -> bool:
    """Install psycogreen's wait callback once, only where gevent has patched; returns whether it is on."""
    global _cooperative
    if _cooperative or not gevent_is_patched():
        return _cooperative
    # Off only to measure what it buys (make bench); never in a real deployment.
    if not env.bool("PSYCOPG2_COOPERATIVE", default=True):
        return False
    from psycopg2 import extensions

    extensions.set_wait_callback(wait_cancelling_on_interrupt)
    _cooperative = True
    return True


def psycopg2_wait_callback_name() -> str | None:
    """Which wait callback psycopg2 has (None: it blocks), for the worker's self-report and the tests."""
    from psycopg2 import extensions

    callback = extensions.get_wait_callback()
    return f"{callback.__module__}.{callback.__qualname__}" if callback else None


def wait_cancelling_on_interrupt(conn: Any, timeout: float | None = None) -> None:
    """psycogreen's wait, which also stops the query in Postgres when the greenlet is interrupted.

    The task's hard time limit (gevent.Timeout) and a cancel at shutdown (GreenletExit) end the greenlet
    while it waits here; without a cancel request Postgres would run the query on to its end, holding its
    locks, until statement_timeout."""
    import gevent
    from psycogreen.gevent import gevent_wait_callback
    from psycopg2 import OperationalError, extensions

    # libpq enforces connect_timeout only when it waits itself; here the hub waits, so the limit is applied
    # here, or a connect to a server that went away waits for TCP to give up (minutes), past the task's limit.
    connect_timeout = None
    if conn.status == extensions.STATUS_SETUP:
        connect_timeout = float(extensions.parse_dsn(conn.dsn).get("connect_timeout") or 0) or None
    try:
        with gevent.Timeout(connect_timeout, OperationalError(f"connection timed out after {connect_timeout}s")):
            gevent_wait_callback(conn, timeout)
    except BaseException:
        with contextlib.suppress(Exception):  # not connected yet, or already gone: nothing runs
            conn.cancel()
        raise


def connections_are_greenlet_local() -> bool:
    """False when django.db was imported before gevent patched: every greenlet would share one connection."""
    import gevent.local
    from django.db import connections

    return isinstance(connections._connections._storage, gevent.local.local)  # type: ignore[attr-defined]


def worker_connections(*, concurrency: int, pooled: bool = True) -> tuple[int, str]:
    """The most Postgres connections the workers can hold at once, and how that figure is made up.

    Each worker process holds at most its pool's size (or, with no pool, one connection per greenlet, thread or
    child process), times the processes in its container (start-worker sets WORKER_PROCESSES) and the containers
    (WORKER_REPLICAS, where the deployment says how many there are). `pooled`: whether the pool serves this
    worker (a gevent worker's; celery_runtime.postgres_pool)."""
    from django.conf import settings

    pool_size = settings.DATABASE_POOL_SIZE if pooled else 0
    per_process = pool_size or concurrency
    if pool_size:
        source = f"DJANGO_DB_POOL_SIZE={pool_size}"
    elif settings.DATABASE_POOL_SIZE:
        source = f"CELERY_WORKER_CONCURRENCY={per_process} (the pool serves gevent workers only)"
    else:
        source = f"CELERY_WORKER_CONCURRENCY={per_process} (no pool: DJANGO_DB_POOL_SIZE=0)"
    total = per_process * settings.WORKER_PROCESSES * settings.WORKER_REPLICAS
    return total, (
        f"{source} x WORKER_PROCESSES={settings.WORKER_PROCESSES} x WORKER_REPLICAS={settings.WORKER_REPLICAS}"
    )


def connection_budget_problem(*, worker_connections: int, worker_source: str, web_connections: int) -> str | None:
    """Why the workers' and the web's connections cannot fit in Postgres, or None when they can."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting::int FROM pg_settings"
            " WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
            " ORDER BY name"
        )
        rows = [row[0] for row in cursor.fetchall()]
    max_connections, reserved = rows[0], sum(rows[1:])
    usable = max_connections - reserved
    needed = worker_connections + web_connections
    if needed <= usable:
        return None
    return (
        f"the workers' connections ({worker_connections}: {worker_source}) plus the web's ({web_connections}, "
        f"WEB_CONCURRENCY x GUNICORN_THREADS) are {needed}, but Postgres allows {usable} "
        f"(max_connections {max_connections} less {reserved} reserved). Lower DJANGO_DB_POOL_SIZE or "
        "WORKER_PROCESSES, or raise Postgres's max_connections."
    )


def check_worker_database_setup(worker: Any) -> None:
    """Refuse to start a worker whose database setup would fail under load; log what is in force."""
    from django.conf import settings
    from django.db import connection

    pool = f"{worker.pool_cls.__module__}"
    problems = []
    pooled = "gevent" in pool and bool(settings.DATABASE_POOL_SIZE)
    if settings.DATABASE_POOL_SIZE and not pooled:
        logger.warning(
            "DJANGO_DB_POOL_SIZE=%s is not used: the connection pool serves a gevent worker's greenlets, and this "
            "worker's pool is %s: %s opens a Postgres connection of its own for a task and closes it when the task "
            "ends",
            settings.DATABASE_POOL_SIZE,
            pool,
            "each child process" if "prefork" in pool else "each thread" if "thread" in pool else "the process",
        )
    if "gevent" in pool:
        if not connections_are_greenlet_local():
            problems.append(
                "django.db was imported before gevent monkey-patched, so all greenlets share one database "
                "connection. Start the worker with `celery -A config.celery_app worker -P gevent` and import "
                "nothing from Django in code that runs before it."
            )
        if settings.DATABASES["default"]["CONN_MAX_AGE"] != 0:
            problems.append(
                "DJANGO_CONN_MAX_AGE must be 0 for the gevent worker: each task runs in a new greenlet, so a "
                "persistent connection is never reused and stays open until garbage collection."
            )
        if _cooperative:
            logger.info("gevent pool: psycopg2 waits yield to the gevent hub (psycogreen)")
        else:
            logger.warning("gevent pool: psycopg2 is NOT cooperative; every query blocks the whole worker")
    worker_total, worker_source = worker_connections(concurrency=int(worker.concurrency), pooled=pooled)
    try:
        budget_problem = connection_budget_problem(
            worker_connections=worker_total,
            worker_source=worker_source,
            web_connections=settings.WEB_CONCURRENCY * settings.GUNICORN_THREADS,
        )
    finally:
        connection.close()  # opened by the worker's main greenlet, which runs no task
    if budget_problem:
        problems.append(budget_problem)
    if problems:
        for problem in problems:
            logger.critical("worker refuses to start: %s", problem)
        raise SystemExit("worker refuses to start: " + " | ".join(problems))
    logger.info(
        "database setup checked: pool %s, concurrency %s, database connections at most %s (%s)",
        pool,
        worker.concurrency,
        worker_total,
        worker_source,
    )


class DatabaseReadiness(bootsteps.Step):
    """Runs once the pool and concurrency are known, before the worker consumes anything."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        check_worker_database_setup(worker)
