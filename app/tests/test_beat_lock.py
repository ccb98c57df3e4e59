"""The beat lock (celery_runtime.beat_lock) and the scheduler that holds it, against the test stack's Postgres.

Every holder here is a real session of the test database; a lock is taken away by ending its session with
pg_terminate_backend, as a Postgres restart or a cut connection would. Advisory locks are per database, so
the development stack's beat (another database) does not take part.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.conf import settings
from django.utils import timezone

from celery_runtime import beat_lock
from celery_runtime.beat_lock import APPLICATION_NAME, LOCK_KEY, LOCK_NAME, BeatLock, connection_params
from celery_runtime.beat_scheduler import RETRY_SECONDS, LivenessDatabaseScheduler
from celery_runtime.probes import BEAT_LIVENESS_FILE
from config.celery_app import app as celery_app


def wait_until(condition: Callable[[], Any], *, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout}s)")
        time.sleep(0.05)
    return value


@pytest.fixture
def pg() -> Iterator[Any]:
    """A session of the test's own, for looking at pg_locks and ending other sessions."""
    connection = psycopg2.connect(**{**connection_params(), "application_name": "pytest-beat-lock"})
    connection.autocommit = True
    yield connection
    connection.close()


def query(pg: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with pg.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def lock_sessions(pg: Any) -> list[tuple[int, bool, str]]:
    """(pid, granted, application_name) of every session that holds or waits for the beat lock in this database."""
    return [
        (int(pid), bool(granted), str(name))
        for pid, granted, name in query(
            pg,
            """SELECT l.pid, l.granted, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
            LOCK_KEY,
        )
    ]


def holder(pg: Any) -> int | None:
    granted = [pid for pid, is_granted, _ in lock_sessions(pg) if is_granted]
    assert len(granted) <= 1
    return granted[0] if granted else None


def end_session(pg: Any, pid: int) -> None:
    """pg_terminate_backend, waiting until the backend is gone (and its locks with it)."""
    assert query(pg, "SELECT pg_terminate_backend(%s, 5000)", pid) == [(True,)]


class Rival:
    """Another beat's session: waits in Postgres's queue for the lock, so that it, and not the session that
    lost the lock, is given it the moment the holder's session ends."""

    def __init__(self, pg: Any) -> None:
        self.connection = psycopg2.connect(**{**connection_params(), "application_name": "pytest-rival-beat"})
        self.connection.autocommit = True
        self.pid = int(self.connection.get_backend_pid())
        self._thread = threading.Thread(target=self._wait_for_lock, daemon=True)
        self._thread.start()
        wait_until(lambda: (self.pid, False, "pytest-rival-beat") in lock_sessions(pg), timeout=5, message="rival")

    def _wait_for_lock(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])

    def takes_over_from(self, pg: Any, pid: int) -> None:
        end_session(pg, pid)
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "the rival was not given the lock"
        assert holder(pg) == self.pid

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def rivals(pg: Any) -> Iterator[Callable[[], Rival]]:
    made: list[Rival] = []

    def make() -> Rival:
        made.append(Rival(pg))
        return made[-1]

    yield make
    for rival in made:
        rival.close()


@pytest.fixture
def locks() -> Iterator[Callable[[], BeatLock]]:
    made: list[BeatLock] = []

    def make() -> BeatLock:
        made.append(BeatLock())
        return made[-1]

    yield make
    for lock in made:
        lock.release()


def test_the_key_is_fixed_and_shows_in_pg_locks_as_documented(pg: Any, locks: Callable[[], BeatLock]) -> None:
    # Changing it would let an old and a new beat run side by side during a rolling update: the figures are
    # literals here, and the module's docstring (what an operator reads) must say the same.
    assert LOCK_NAME == "celery_runtime.beat_lock"
    assert LOCK_KEY == -2324287977798058640
    documented = beat_lock.__doc__ or ""
    assert "integer: -2324287977798058640," in documented
    assert "classid 3753801830, objid 396541296, objsubid 1" in documented
    lock = locks()
    assert lock.acquire()
    rows = query(
        pg, "SELECT classid, objid, objsubid FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", lock.backend_pid
    )
    assert rows == [(3753801830, 396541296, 1)]
    assert query(pg, "SELECT application_name FROM pg_stat_activity WHERE pid = %s", lock.backend_pid) == [
        (APPLICATION_NAME,)
    ]


def test_the_connection_is_the_settings_database_with_its_own_name_and_timeouts() -> None:
    database = settings.DATABASES["default"]
    params = connection_params()
    assert params["dbname"] == database["NAME"]
    assert params["host"] == database["HOST"]
    assert params["application_name"] == "beat-lock"
    assert params["connect_timeout"] == 2
    assert "statement_timeout" in params["options"]  # the settings' own options are kept
    assert "tcp_keepalives_idle=10" in params["options"]
    # Options that are Django's or the worker pool's are not passed to libpq.
    pooled = {**database, "OPTIONS": {**database["OPTIONS"], "MAX_CONNS": 10, "POOL_TIMEOUT": 30.0, "pool": True}}
    assert not {"MAX_CONNS", "POOL_TIMEOUT", "pool"} & set(connection_params(pooled))


def test_a_second_holder_is_refused_while_the_first_holds_it(pg: Any, locks: Callable[[], BeatLock]) -> None:
    first, second = locks(), locks()
    assert first.acquire()
    assert holder(pg) == first.backend_pid
    assert not second.acquire()
    assert second.backend_pid is None  # a refused beat keeps no connection open
    assert first.acquire()  # the holder asking again keeps what it has
    assert first.check()
    first.release()
    assert holder(pg) is None
    assert second.acquire()
    assert not first.acquire()


def test_the_lock_goes_with_the_session_and_the_holder_takes_it_back(pg: Any, locks: Callable[[], BeatLock]) -> None:
    lock, other = locks(), locks()
    assert lock.acquire()
    lost_pid = lock.backend_pid
    assert lost_pid is not None
    end_session(pg, lost_pid)
    assert holder(pg) is None  # released with the session, though the holder has not noticed yet
    started = time.monotonic()
    assert not lock.check()  # the server's goodbye is on the socket: seen at once, not after CHECK_EVERY_SECONDS
    assert time.monotonic() - started < 1
    assert lock.backend_pid is None
    assert lock.acquire()
    assert lock.backend_pid not in (None, lost_pid)
    assert holder(pg) == lock.backend_pid
    assert not other.acquire()


def test_a_holder_whose_session_was_taken_over_is_refused(
    pg: Any, locks: Callable[[], BeatLock], rivals: Callable[[], Rival]
) -> None:
    lock = locks()
    assert lock.acquire()
    assert lock.backend_pid is not None
    rivals().takes_over_from(pg, lock.backend_pid)
    assert not lock.check()
    assert not lock.acquire()


def add_due_task(name: str) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name=name,
        task="diagnostics.tasks.noop_task",
        interval=every_second,
        last_run_at=timezone.now() - timedelta(hours=1),
    )


class RecordingScheduler(LivenessDatabaseScheduler):
    """The real scheduler, lock and schedule in Postgres included; only the send is recorded instead of published,
    so no task reaches the test worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[str] = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> None:
        self.sent.append(entry.name)


@pytest.fixture
def scheduler(transactional_db: None) -> Iterator[Callable[[], RecordingScheduler]]:
    """Committed rows: the scheduler closes Django's connection between ticks, as beat does."""
    made: list[RecordingScheduler] = []

    def make() -> RecordingScheduler:
        made.append(RecordingScheduler(app=celery_app))
        return made[-1]

    yield make
    for scheduler in made:
        scheduler._finalize.cancel()
        if scheduler.lock is not None:
            scheduler.lock.release()


def tick_until_sent(scheduler: RecordingScheduler, name: str) -> None:
    """Ticks, as beat's loop does, until the scheduler has sent `name` once more."""
    count = scheduler.sent.count(name)

    def sent() -> bool:
        scheduler.tick()
        return scheduler.sent.count(name) > count

    wait_until(sent, timeout=5, message=f"{name} was not sent")


def test_a_scheduler_that_lost_the_lock_to_another_beat_sends_nothing_and_exits(
    pg: Any, scheduler: Callable[[], RecordingScheduler], rivals: Callable[[], Rival], caplog: pytest.LogCaptureFixture
) -> None:
    add_due_task("beat-lock-test")
    beat = scheduler()
    assert beat.lock is not None
    assert beat.lock.backend_pid is not None
    assert holder(pg) == beat.lock.backend_pid
    tick_until_sent(beat, "beat-lock-test")  # it sends while it holds the lock
    sent = list(beat.sent)
    rivals().takes_over_from(pg, beat.lock.backend_pid)
    time.sleep(1.1)  # the every-second task is due again
    with pytest.raises(SystemExit) as exited:
        beat.tick()
    assert exited.value.code == 1
    assert beat.sent == sent
    assert "another beat holds the beat lock" in caplog.text
    # Celery's beat loop ends in close(), which gives the exit status back to the process.
    with pytest.raises(SystemExit) as exited:
        beat.close()
    assert exited.value.code == 1


def test_a_second_scheduler_exits_at_start(
    pg: Any, scheduler: Callable[[], RecordingScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    first = scheduler()
    with pytest.raises(SystemExit) as exited:
        scheduler()
    assert exited.value.code == 1
    assert "another beat holds the beat lock" in caplog.text
    assert first.lock is not None
    assert holder(pg) == first.lock.backend_pid


def test_a_scheduler_without_postgres_sends_nothing_stays_live_and_takes_the_lock_back(
    pg: Any, scheduler: Callable[[], RecordingScheduler], caplog: pytest.LogCaptureFixture
) -> None:
    add_due_task("beat-lock-test")
    beat = scheduler()
    assert beat.lock is not None
    tick_until_sent(beat, "beat-lock-test")
    lost_pid = beat.lock.backend_pid
    assert lost_pid is not None
    # Postgres goes away: the session ends, and a new connection is refused (a port nothing listens on).
    reachable = beat.lock.params
    beat.lock.params = {**reachable, "host": "127.0.0.1", "port": 1}
    end_session(pg, lost_pid)
    sent = list(beat.sent)
    time.sleep(1.1)
    for _ in range(3):
        os.utime(BEAT_LIVENESS_FILE, (0, 0))
        assert beat.tick() == RETRY_SECONDS
        assert Path(BEAT_LIVENESS_FILE).stat().st_mtime > time.time() - 5  # live: waiting is its job now
    assert beat.sent == sent
    assert holder(pg) is None
    assert "lost the beat lock" in caplog.text
    assert "Postgres cannot be reached to take the beat lock again" in caplog.text
    # Postgres is back: the next tick takes the lock again and the due task goes out.
    beat.lock.params = reachable
    tick_until_sent(beat, "beat-lock-test")
    assert holder(pg) == beat.lock.backend_pid
    assert beat.lock.backend_pid != lost_pid
    assert "holds the beat lock again" in caplog.text


def beat_process(*extra: str) -> subprocess.Popen[str]:
    """A real `celery beat`, as start-beat runs it, with an empty schedule (nothing is sent to the test worker)."""
    environment = {**os.environ, "CELERY_BEAT_SCHEDULE": "{}", "DJANGO_DB_APPLICATION_NAME": "pytest-beat"}
    command = ["celery", "-A", "config.celery_app", "beat", "--loglevel", "INFO", "--pidfile=", *extra]
    return subprocess.Popen(
        command, env=environment, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finished(process: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"beat did not exit within {timeout}s:\n{output[-3000:]}") from None
    return process.returncode, output


def test_celery_beat_exits_1_while_another_beat_holds_the_lock(pg: Any, locks: Callable[[], BeatLock]) -> None:
    first = locks()
    assert first.acquire()
    status, output = finished(beat_process(), timeout=60)
    assert status == 1, output[-3000:]
    assert "another beat holds the beat lock" in output
    assert holder(pg) == first.backend_pid


def test_celery_beat_exits_1_when_another_beat_takes_the_lock_while_it_runs(
    pg: Any, transactional_db: None, rivals: Callable[[], Rival]
) -> None:
    beat = beat_process("--max-interval", "1")
    try:
        beat_pid = wait_until(
            lambda: next(
                (pid for pid, granted, name in lock_sessions(pg) if granted and name == APPLICATION_NAME), None
            ),
            timeout=60,
            message="celery beat did not take the lock",
        )
        rivals().takes_over_from(pg, beat_pid)
        status, output = finished(beat, timeout=30)
    finally:
        if beat.poll() is None:
            beat.kill()
            beat.communicate()
    assert status == 1, output[-3000:]
    assert "lost the beat lock" in output
    assert "another beat holds the beat lock" in output
