"""Tests that run tasks on the real worker: the test-worker service (gevent pool, concurrency 50), which
shares this session's test database and a Redis database of its own. `make test` starts it."""

import contextlib
import os
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connections

WORKER_APPLICATION_NAME = "test-worker"


def wait_until(condition: Callable[[], Any], *, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout}s)")
        time.sleep(0.05)


def start_gevent_worker(
    queue: str,
    nodename: str,
    *,
    concurrency: int,
    environment: dict[str, str],
    extra: tuple[str, ...] = (),
    pool: str = "gevent",
    loglevel: str = "INFO",
) -> subprocess.Popen[str]:
    """A real `celery worker -P gevent` (or another `pool`) of the test's own, consuming `queue` only; its output
    is kept for the test, and read when it stops: many tasks at INFO (two lines each) would fill the pipe and
    block the worker, so such a test asks for WARNING."""
    command = ["celery", "-A", "config.celery_app", "worker", "-P", pool, "-c", str(concurrency)]
    command += ["-Q", queue, "-n", nodename, "--without-mingle", "--without-gossip", "--loglevel", loglevel, *extra]
    return subprocess.Popen(
        command, env={**os.environ, **environment}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_worker(nodename: str, *, timeout: float = 60) -> None:
    """Until the worker `nodename` answers a ping (it consumes once it does)."""
    from config.celery_app import app as celery_app

    wait_until(
        lambda: celery_app.control.ping(destination=[nodename], timeout=0.5),
        timeout=timeout,
        message=f"worker {nodename} did not start",
    )


def broker_client() -> redis.Redis:
    """The test broker's Redis, where tasks given `runs_to` count their runs."""
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def connection_count(application_name: str = WORKER_APPLICATION_NAME, *, running: str = "%") -> int:
    """Postgres connections of one process (its application_name), or only those whose query is LIKE `running`."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
            [application_name, running],
        )
        return int(cursor.fetchone()[0])


class ConnectionSampler:
    """Counts the worker's Postgres connections every 20 ms from a thread of its own."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.samples.append(connection_count())
                time.sleep(0.02)
        finally:
            connections.close_all()

    def __enter__(self) -> "ConnectionSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class BrokerProxy:
    """A TCP proxy between one worker and the test broker's Redis (`url` is the worker's broker URL). `cut()` closes
    every connection through it and refuses new ones, as a Redis restart does to its clients, until `restore()`;
    the test's own Redis clients, and every other worker, keep theirs."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.target = (parts.hostname or "localhost", parts.port or 6379)
        self.listener = socket.create_server(("127.0.0.1", 0))
        credentials = parts.netloc.rpartition("@")[0]
        address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        netloc = f"{credentials}@{address}" if credentials else address
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self.refusing = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                refusing = self.refusing
                if not refusing:
                    self._open.add(client)
            if refusing:
                self._close(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # Redis itself away: the worker sees its connection closed, as it would
                self._close(client)
                continue
            with self._lock:
                self._open.add(upstream)  # a client cut meanwhile is closed already: its pipes close this one
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(sink)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)  # wakes the thread reading it, which close() alone would not
        sock.close()

    def cut(self) -> None:
        with self._lock:
            self.refusing = True
            open_sockets = list(self._open)
        for sock in open_sockets:
            self._close(sock)

    def restore(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, which close() alone would not
        self.listener.close()


@pytest.fixture
def connection_sampler() -> type[ConnectionSampler]:
    return ConnectionSampler
