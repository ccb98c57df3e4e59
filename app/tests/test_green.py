"""The gevent worker's database guards. Monkey-patching is process-wide, so each order is tried in a
fresh interpreter, started the way Celery starts a `-P gevent` worker."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.test import override_settings

from celery_runtime import green

COOPERATIVE_WAIT = "celery_runtime.green.wait_cancelling_on_interrupt"

# Celery's own entry point patches first (for `-P gevent` as two words), then imports the app.
CELERY_ORDER = """
import sys
sys.argv = ["celery", "-A", "config.celery_app", "worker", "-P", "gevent"]
from celery import maybe_patch_concurrency
maybe_patch_concurrency()
assert "django.db" not in sys.modules, "django.db imported before gevent patched"
"""

# What the posts' setups did by accident: something imports Django's ORM before the patching.
WRONG_ORDER = """
import django.db
from gevent import monkey
monkey.patch_all()
"""

REPORT = """
import json, django
import config.celery_app
django.setup()
from celery_runtime import green
from types import SimpleNamespace
worker = SimpleNamespace(pool_cls=type("TaskPool", (), {"__module__": "celery.concurrency.gevent"}), concurrency=5)
try:
    green.check_worker_database_setup(worker)
    refused = None
except SystemExit as exit:
    refused = str(exit)
print(json.dumps({
    "greenlet_local": green.connections_are_greenlet_local(),
    "wait_callback": green.psycopg2_wait_callback_name(),
    "refused": refused,
}))
"""


def run_worker_start(prelude: str, *, conn_max_age: str = "0") -> dict[str, object]:
    import os

    env = {**os.environ, "DJANGO_CONN_MAX_AGE": conn_max_age}
    result = subprocess.run(
        [sys.executable, "-c", prelude + REPORT], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_celerys_start_order_gives_greenlet_local_cooperative_connections() -> None:
    report = run_worker_start(CELERY_ORDER)
    assert report == {"greenlet_local": True, "wait_callback": COOPERATIVE_WAIT, "refused": None}


def test_a_worker_that_imported_django_db_before_patching_refuses_to_start() -> None:
    report = run_worker_start(WRONG_ORDER)
    assert report["greenlet_local"] is False
    assert "django.db was imported before gevent monkey-patched" in str(report["refused"])


def test_a_gevent_worker_with_persistent_connections_refuses_to_start() -> None:
    report = run_worker_start(CELERY_ORDER, conn_max_age="60")
    assert "DJANGO_CONN_MAX_AGE must be 0" in str(report["refused"])


@pytest.mark.django_db
def test_the_connection_budget_is_read_from_postgres() -> None:
    """Postgres's figures, whatever they are: first the server's own, then others put in their place by a
    temporary view, which this session's unqualified `pg_settings` finds before pg_catalog's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int"
        )
        max_connections, reserved = cursor.fetchone()
    usable = max_connections - reserved  # reserved_connections is 0 here
    assert green.connection_budget_problem(worker_connections=usable - 8, worker_source="", web_connections=8) is None
    problem = green.connection_budget_problem(worker_connections=usable, worker_source="a pool", web_connections=8)
    assert problem is not None
    assert f"the workers' connections ({usable}: a pool) plus the web's (8, " in problem
    allowed = f"Postgres allows {usable} (max_connections {max_connections} less {reserved} reserved)"
    assert f"are {usable + 8}, but {allowed}" in problem

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY VIEW pg_settings AS SELECT * FROM (VALUES ('max_connections', '57'),"
            " ('superuser_reserved_connections', '2'), ('reserved_connections', '1')) AS s(name, setting)"
        )
    try:
        assert green.connection_budget_problem(worker_connections=46, worker_source="", web_connections=8) is None
        problem = green.connection_budget_problem(worker_connections=47, worker_source="a pool", web_connections=8)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP VIEW pg_temp.pg_settings")
    assert problem is not None
    assert "are 55, but Postgres allows 54 (max_connections 57 less 3 reserved)" in problem


def oversized_worker(concurrency: int, pool: str = "prefork") -> SimpleNamespace:
    pool_cls = type("TaskPool", (), {"__module__": f"celery.concurrency.{pool}"})
    return SimpleNamespace(pool_cls=pool_cls, concurrency=concurrency)


@pytest.fixture
def as_if_gevent_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up check of a gevent worker, in this process (never patched): only its budget is at stake."""
    monkeypatch.setattr(green, "connections_are_greenlet_local", lambda: True)


@pytest.mark.django_db(transaction=True)  # the check closes its connection, as the worker must
def test_without_a_pool_a_worker_counts_its_concurrency_and_refuses_to_start_when_it_does_not_fit() -> None:
    expected = (
        r"worker refuses to start: the workers' connections \(5000: CELERY_WORKER_CONCURRENCY=5000 \(no pool: "
        r"DJANGO_DB_POOL_SIZE=0\) x WORKER_PROCESSES=1 x WORKER_REPLICAS=1\)"
    )
    with pytest.raises(SystemExit, match=expected):
        green.check_worker_database_setup(oversized_worker(5000))


@pytest.mark.django_db(transaction=True)
@override_settings(DATABASE_POOL_SIZE=10, WORKER_PROCESSES=4, WORKER_REPLICAS=2)
def test_with_a_pool_the_budget_counts_pools_times_processes_and_replicas_not_concurrency(
    as_if_gevent_patched: None,
) -> None:
    assert green.worker_connections(concurrency=5000) == (
        80,
        "DJANGO_DB_POOL_SIZE=10 x WORKER_PROCESSES=4 x WORKER_REPLICAS=2",
    )
    green.check_worker_database_setup(oversized_worker(5000, "gevent"))  # 80 + the web's 8 fit in 197


@pytest.mark.django_db(transaction=True)
@override_settings(DATABASE_POOL_SIZE=10, WORKER_PROCESSES=1, WORKER_REPLICAS=1)
def test_a_prefork_worker_does_not_use_the_pool_and_counts_a_connection_per_child(
    caplog: pytest.LogCaptureFixture,
) -> None:
    green.check_worker_database_setup(oversized_worker(4, "prefork"))
    assert "DJANGO_DB_POOL_SIZE=10 is not used" in caplog.text
    assert "database connections at most 4 (CELERY_WORKER_CONCURRENCY=4 (the pool serves gevent" in caplog.text


@pytest.mark.django_db(transaction=True)
@override_settings(DATABASE_POOL_SIZE=25, WORKER_PROCESSES=4, WORKER_REPLICAS=2)
def test_pools_that_do_not_fit_stop_the_worker_with_the_fix_named(as_if_gevent_patched: None) -> None:
    with pytest.raises(SystemExit) as refused:
        green.check_worker_database_setup(oversized_worker(20, "gevent"))
    message = str(refused.value)
    assert "the workers' connections (200: DJANGO_DB_POOL_SIZE=25 x WORKER_PROCESSES=4 x WORKER_REPLICAS=2)" in message
    assert "Lower DJANGO_DB_POOL_SIZE or WORKER_PROCESSES, or raise Postgres's max_connections" in message


# The web as gunicorn loads it, and beat as `celery beat` starts: neither is a gevent process.
WEB_START = """
import config.wsgi
"""
BEAT_START = """
import sys
sys.argv = ["celery", "-A", "config.celery_app", "beat"]
from celery import maybe_patch_concurrency
maybe_patch_concurrency()
import config.celery_app
"""


@pytest.mark.parametrize("start", [WEB_START, BEAT_START], ids=["web", "beat"])
def test_psycopg2_stays_blocking_outside_gevent(start: str) -> None:
    """The web and beat run threads or a loop of their own, not greenlets: the wait callback, which waits on
    gevent's hub, must not be installed there. Each is started in a fresh interpreter, as it starts for real."""
    report = run_worker_start(start)
    assert report["wait_callback"] is None
    assert report["greenlet_local"] is False
