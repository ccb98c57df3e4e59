"""make bench: throughput and latency of the Celery worker by pool and workload, and of the web tier.

Runs inside the compose network (the `bench` service), against the stack's own Postgres and Redis. Each
worker under test is started here as a real `celery worker` process on a Redis database of its own, so the
development worker never sees these tasks. Every figure comes from this run; the ratios compare cells
measured minutes apart on the same machine. This is a benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

import tempfile  # noqa: E402

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402

from config.celery_app import app  # noqa: E402
from diagnostics.models import ProbeRecord  # noqa: E402

BROKER_URL = settings.CELERY_BROKER_URL  # Redis database 2 (the bench service), not the dev worker's
CORES = os.cpu_count() or 1
GEVENT_CONCURRENCY = int(os.environ.get("BENCH_GEVENT_CONCURRENCY", "100"))
POOL_SIZE = int(os.environ.get("BENCH_DB_POOL_SIZE", "20"))  # the worker's default (DJANGO_DB_POOL_SIZE)
PGBOUNCER_URL = os.environ["BENCH_PGBOUNCER_URL"]
IO_SECONDS = 0.1
DB_SECONDS = 0.1
LONG_QUERY = "db pg_sleep+insert"
SHORT_QUERIES = "db insert+select"
TASK_QUEUE = "celery"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))  # 0.2 for a quick look
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", "/bench-results"))
WEB = os.environ.get("BENCH_WEB_HOST", "web"), int(os.environ.get("BENCH_WEB_PORT", "8000"))

reports = redis.Redis.from_url(BROKER_URL)


@dataclass
class WorkerSpec:
    label: str
    pool: str
    concurrency: int
    env: dict[str, str] = field(default_factory=dict)
    app: str = "config.celery_app"
    processes: int = 1  # more than one: start-worker, the container's own supervisor, starts them
    queues: tuple[str, ...] = (TASK_QUEUE,)

    @property
    def application_name(self) -> str:
        """Its Postgres connections' name, which they are counted by: each worker's own, since workers that
        take turns are all running, and PgBouncer's connections keep the name of their last client."""
        return f"bench-{self.label.replace(' ', '-')}"


# What the template's gevent worker runs with: tasks share a pool of POOL_SIZE connections per process.
POOLED = {"DJANGO_DB_POOL_SIZE": str(POOL_SIZE)}
PER_TASK_CONNECTIONS = {"DJANGO_DB_POOL_SIZE": "0"}


@dataclass
class Cell:
    worker: str
    workload: str
    tasks: int
    seconds: float
    tasks_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    peak_connections: int | None = None  # the worker's Postgres connections at most, for database workloads


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


class Worker:
    """Real `celery worker` processes, started and stopped around a set of workloads."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        env = {
            **os.environ,
            "DJANGO_CONN_MAX_AGE": "0",
            "DJANGO_DEBUG": "false",  # as deployed: with DEBUG on, Django keeps and logs every query
            "DJANGO_DB_APPLICATION_NAME": spec.application_name,
            "GEVENT_MONITOR_THREAD_ENABLE": "false",  # its reports would be noise for the unpatched run
            "WORKER_AUTORELOAD": "false",
            "WORKER_PROCESSES": str(spec.processes),
            **spec.env,
        }
        options = ["-c", str(spec.concurrency), "--loglevel", "WARNING", "--without-mingle", "--without-gossip"]
        options += ["-Q", ",".join(spec.queues)]
        host = os.uname().nodename
        if spec.processes > 1:
            command = ["start-worker", *options]
            self.nodenames = [f"worker{index}@{host}" for index in range(1, spec.processes + 1)]
        else:
            hostname = f"bench-{spec.label.replace(' ', '-')}-{uuid.uuid4().hex[:6]}@{host}"
            command = ["celery", "-A", spec.app, "worker", "-P", spec.pool, *options, "--hostname", hostname]
            self.nodenames = [hostname]
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - open while the worker runs; stop() closes it
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self._wait_ready()
        self.consume(False)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        waiting = set(self.nodenames)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"worker {self.spec.label} exited at start:\n{self.log.read()}")
            for reply in app.control.ping(destination=list(waiting), timeout=0.5) or []:
                waiting -= set(reply)
            if not waiting:
                return
        raise SystemExit(f"worker {self.spec.label}: {sorted(waiting)} did not answer a ping within 60 s")

    def consume(self, on: bool) -> None:
        """Starts or stops consuming its queues (stopped while a workload's tasks are queued)."""
        control = app.control.add_consumer if on else app.control.cancel_consumer
        for queue in self.spec.queues:
            replies = control(queue, destination=self.nodenames, reply=True, timeout=5) or []
            if len(replies) != len(self.nodenames):
                raise SystemExit(f"worker {self.spec.label}: {len(replies)} of {len(self.nodenames)} answered")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class ConnectionPeak:
    """The most Postgres connections the bench's workers held at once, sampled every 10 ms in a thread."""

    def __init__(self, application_name: str) -> None:
        self.application_name = application_name
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sampler = connections.create_connection("default")
        try:
            with sampler.cursor() as cursor:
                while not self._stop.is_set():
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.application_name]
                    )
                    self.peak = max(self.peak, cursor.fetchone()[0])
                    time.sleep(0.01)
        finally:
            sampler.close()

    def __enter__(self) -> ConnectionPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send(workload: str, tasks: int, report_to: str) -> None:
    for index in range(tasks):
        kwargs = {"report_to": report_to, "sent_at": time.time(), "report_batched": True}
        key = f"bench-{report_to}-{index}"
        if workload == "no-op":
            app.send_task("diagnostics.tasks.noop_task", kwargs=kwargs)
        elif workload == "io 100 ms":
            app.send_task("diagnostics.tasks.sleep_task", args=[IO_SECONDS], kwargs=kwargs)
        elif workload == SHORT_QUERIES:
            app.send_task("diagnostics.tasks.database_insert_select_task", args=[key], kwargs=kwargs)
        else:
            app.send_task("diagnostics.tasks.database_sleep_insert_task", args=[DB_SECONDS, key], kwargs=kwargs)


def run_workload(worker: Worker, workload: str, tasks: int, *, queued_first: bool = False) -> Cell:
    """Sends `tasks` tasks as fast as one process can (its rate: docs/performance.md) while the worker consumes
    them; the rate runs from the first send to the last task done.

    queued_first: the tasks are all queued before the worker starts on them, and the rate runs from the first
    task done to the last. For workers faster than one sender (several processes), whose rate would otherwise
    be the sender's."""
    report_to = f"bench:{uuid.uuid4().hex}"
    reports.delete(report_to)
    peak = ConnectionPeak(worker.spec.application_name) if workload.startswith("db ") else contextlib.nullcontext()
    if queued_first:
        send(workload, tasks, report_to)
    with peak:
        started = time.time()
        worker.consume(True)
        if not queued_first:
            send(workload, tasks, report_to)
        deadline = time.monotonic() + 120
        while reports.llen(report_to) < tasks:
            if time.monotonic() > deadline:
                raise SystemExit(f"{worker.spec.label} / {workload}: {reports.llen(report_to)} of {tasks} in 120 s")
            time.sleep(0.02)
    worker.consume(False)
    pairs = [tuple(map(float, raw.split())) for raw in reports.lrange(report_to, 0, -1)]
    reports.delete(report_to)
    finished = sorted(done for _, done in pairs)
    if queued_first:
        latencies = sorted((done - max(sent, started)) * 1000 for sent, done in pairs)
        # A worker whose consumer is cancelled still runs the message its last fetch was already waiting for,
        # while the others are being queued: that task is not part of the burst being timed.
        finished = [done for done in finished if done >= started]
        seconds, counted = finished[-1] - finished[0], len(finished) - 1
    else:
        latencies = sorted((done - sent) * 1000 for sent, done in pairs)
        seconds, counted = finished[-1] - started, tasks
    return Cell(
        worker=worker.spec.label,
        workload=workload,
        tasks=tasks,
        seconds=round(seconds, 2),
        tasks_per_second=round(counted / seconds, 1),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        peak_connections=peak.peak if isinstance(peak, ConnectionPeak) else None,
    )


def side_by_side(
    specs: list[tuple[WorkerSpec, int]], workloads: list[str], *, rounds: int = 3, queued_first: bool = False
) -> dict[tuple[str, str], Cell]:
    """Workers whose ratios matter, started together and taking turns on each workload `rounds` times (this
    machine's speed drifts over minutes); the median round of each is kept. `specs` pairs a worker with the
    tasks it gets per round. A round before the first warms each worker's connections and is not counted."""
    workers = [(Worker(spec), tasks) for spec, tasks in specs]
    medians: dict[tuple[str, str], Cell] = {}
    try:
        for workload in workloads:
            measured: dict[str, list[Cell]] = {}
            for round_ in range(rounds + 1):
                for worker, tasks in workers:
                    cell = run_workload(worker, workload, scaled(tasks), queued_first=queued_first)
                    if round_:
                        measured.setdefault(worker.spec.label, []).append(cell)
            for label, cells in measured.items():
                median = sorted(cells, key=lambda cell: cell.tasks_per_second)[rounds // 2]
                medians[label, workload] = median
                print_cell(median)
    finally:
        for worker, _ in workers:
            worker.stop()
    return medians


def bench_results(*, round_trips: int = 100, burst: int = 200) -> dict[str, float]:
    """What a caller of `sum_task.delay(x, y).get()` waits, against the template's worker: one at a time, then many."""
    from diagnostics.tasks import sum_task

    for index in range(5):  # warm: the worker's pool, this process's connections
        sum_task.delay(index, index).get(interval=0.002, timeout=30)
    waits = []
    for index in range(round_trips):
        sent = time.perf_counter()
        assert sum_task.delay(index, index).get(interval=0.002, timeout=30) == 2 * index
        waits.append((time.perf_counter() - sent) * 1000)
    started = time.perf_counter()
    results = [sum_task.delay(index, 1) for index in range(burst)]
    values = [result.get(interval=0.002, timeout=60) for result in results]
    seconds = time.perf_counter() - started
    assert values == [index + 1 for index in range(burst)]
    django_waits = django_task_round_trips(round_trips)
    return {
        "round_trips": round_trips,
        "round_trip_median_ms": round(percentile(sorted(waits), 0.5), 1),
        "django_task_round_trip_median_ms": round(percentile(sorted(django_waits), 0.5), 1),
        "django_task_round_trip_p95_ms": round(percentile(sorted(django_waits), 0.95), 1),
        "round_trip_p95_ms": round(percentile(sorted(waits), 0.95), 1),
        "burst": burst,
        "burst_seconds": round(seconds, 2),
        "burst_tasks_per_second": round(burst / seconds, 1),
    }


def bench_queues(*, one_at_a_time: int = 100, backlog: int = 3000) -> dict[str, float]:
    """A worker consuming two queues (`-Q celery,second`): what a task sent to an idle worker waits on each queue,
    one at a time, then on the second queue while the first holds a backlog (a busy queue must not starve the
    others). Both are measured from the send to the task's report, in milliseconds."""
    second = "second"
    spec = WorkerSpec("gevent -Q celery,second", "gevent", GEVENT_CONCURRENCY, POOLED, queues=(TASK_QUEUE, second))
    worker = Worker(spec)
    report_to = f"bench:{uuid.uuid4().hex}"

    def one(queue: str) -> float:
        sent = time.time()
        app.send_task("diagnostics.tasks.noop_task", kwargs={"report_to": report_to, "sent_at": sent}, queue=queue)
        _, raw = reports.blpop([report_to], timeout=30) or (None, None)
        if raw is None:
            raise SystemExit(f"{spec.label}: a task sent to {queue} did not run within 30 s")
        sent_at, done = map(float, raw.split())
        return (done - sent_at) * 1000

    try:
        worker.consume(True)
        for queue in (TASK_QUEUE, second):  # warm
            one(queue)
        waits: dict[str, list[float]] = {TASK_QUEUE: [], second: []}
        for _ in range(scaled(one_at_a_time)):
            for queue in (TASK_QUEUE, second):
                waits[queue].append(one(queue))
        backlog_report = f"bench:{uuid.uuid4().hex}"
        worker.consume(False)
        send("io 100 ms", scaled(backlog), backlog_report)  # the first queue: 100 ms each, seconds of work ahead
        worker.consume(True)
        behind = [one(second) for _ in range(scaled(one_at_a_time) // 4)]
        left = scaled(backlog) - reports.llen(backlog_report)
    finally:
        worker.stop()
        app.control.purge()
        reports.delete(report_to)
    return {
        "first_queue_p50_ms": round(percentile(sorted(waits[TASK_QUEUE]), 0.5), 1),
        "second_queue_p50_ms": round(percentile(sorted(waits[second]), 0.5), 1),
        "second_queue_p95_ms": round(percentile(sorted(waits[second]), 0.95), 1),
        "second_behind_backlog_p50_ms": round(percentile(sorted(behind), 0.5), 1),
        "backlog_left": left,
    }


def django_task_round_trips(round_trips: int) -> list[float]:
    """Milliseconds from `django_sum_task.enqueue(...)` to its result read back with Django's `refresh()`, polled
    as `.get(interval=0.002)` polls: sum_task's round trip through django.tasks (celery_runtime.django_tasks)."""
    from diagnostics.tasks import django_sum_task

    waits = []
    for index in range(5 + round_trips):  # the first 5 warm up
        sent = time.perf_counter()
        result = django_sum_task.enqueue(x=index, y=index)
        while True:
            result.refresh()
            if result.is_finished:
                break
            time.sleep(0.002)
        assert result.return_value == 2 * index, result.errors
        if index >= 5:
            waits.append((time.perf_counter() - sent) * 1000)
    return waits


# >>> example apps
def bench_web(*, clients: int = 16, requests_per_client: int = 150) -> dict[str, Any]:
    """POST /logs/ from `clients` keep-alive connections, each sending a fixed number of requests."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(*WEB, timeout=30)
        mine = []
        for index in range(requests_per_client):
            body = json.dumps({"text": f"bench {index}"})
            sent = time.perf_counter()
            connection.request("POST", "/logs/", body, {"Content-Type": "application/json", "Host": "localhost"})
            response = connection.getresponse()
            response.read()
            mine.append((time.perf_counter() - sent) * 1000)
            if response.status != 202:
                with lock:
                    errors.append(str(response.status))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
    }


# <<< example apps


def scaled(count: int) -> int:
    return max(10, int(count * SCALE))


def compare_with(before: str) -> None:
    """BENCH_COMPARE_WITH=<an app/ tree of other code>: the template's gevent worker on that code and on this one,
    side by side on the hot path's rows (how a change is held within 10 %: docs/performance.md)."""
    now = WorkerSpec("gevent now", "gevent", GEVENT_CONCURRENCY, POOLED)
    then = WorkerSpec("gevent before", "gevent", GEVENT_CONCURRENCY, {**POOLED, "PYTHONPATH": f"{before}:/bench"})
    for queued_first in (False, True):
        print(f"-- {'queued first' if queued_first else 'sent while it consumes'}")
        side_by_side([(now, 3000), (then, 3000)], ["no-op", "io 100 ms"], queued_first=queued_first)
    print("-- queued first")
    side_by_side([(now, 1000), (then, 1000)], [LONG_QUERY, SHORT_QUERIES], queued_first=True)
    ProbeRecord.objects.filter(key__startswith="bench-").delete()


def main() -> None:
    ProbeRecord.objects.filter(key__startswith="bench-").delete()
    app.control.purge()
    if os.environ.get("BENCH_COMPARE_WITH"):
        compare_with(os.environ["BENCH_COMPARE_WITH"])
        return
    through_pgbouncer = {**PER_TASK_CONNECTIONS, "DATABASE_URL": PGBOUNCER_URL}
    gevent = WorkerSpec("gevent", "gevent", GEVENT_CONCURRENCY, POOLED)
    runs: list[tuple[WorkerSpec, dict[str, int]]] = [  # tasks per workload, so that each cell takes a few seconds
        (gevent, {"no-op": 3000, "io 100 ms": 3000}),
        (
            WorkerSpec("gevent-unpatched", "gevent", GEVENT_CONCURRENCY, {**POOLED, "PSYCOPG2_COOPERATIVE": "false"}),
            {"no-op": 3000, "io 100 ms": 3000, LONG_QUERY: 60},
        ),
        (WorkerSpec("prefork", "prefork", CORES), {"no-op": 3000, "io 100 ms": 100, LONG_QUERY: 100}),
        (WorkerSpec("solo", "solo", 1), {"no-op": 2000, "io 100 ms": 50, LONG_QUERY: 50}),
    ]
    prefetch_one = {**POOLED, "CELERY_WORKER_PREFETCH_MULTIPLIER": "1"}
    task_events = {**POOLED, "CELERY_WORKER_SEND_TASK_EVENTS": "true"}
    runs += [
        (WorkerSpec("gevent-prefetch-1", "gevent", GEVENT_CONCURRENCY, prefetch_one), {"io 100 ms": 400}),
        (WorkerSpec("gevent-task-events", "gevent", GEVENT_CONCURRENCY, task_events), {"no-op": 3000}),
        (WorkerSpec("bare-celery-gevent", "gevent", GEVENT_CONCURRENCY, app="bare_celery_app"), {"no-op": 3000}),
    ]
    cells: list[Cell] = []
    for spec, workloads in runs:
        worker = Worker(spec)
        try:
            for workload, tasks in workloads.items():
                cells.append(run_workload(worker, workload, scaled(tasks)))
                print_cell(cells[-1])
        finally:
            worker.stop()

    # How the worker reaches Postgres: its pool, a connection per task, a connection per task through PgBouncer.
    pgbouncer = WorkerSpec("gevent-pgbouncer", "gevent", GEVENT_CONCURRENCY, through_pgbouncer)
    per_task = WorkerSpec("gevent-per-task-conn", "gevent", GEVENT_CONCURRENCY, PER_TASK_CONNECTIONS)
    connection_cells = side_by_side(
        [(gevent, 1000), (per_task, 600), (pgbouncer, 600)], [LONG_QUERY, SHORT_QUERIES], queued_first=True
    )
    ProbeRecord.objects.filter(key__startswith="bench-").delete()

    # One process against one per core, the tasks queued first (one sender could not keep several busy).
    several = WorkerSpec(f"gevent x{CORES} processes", "gevent", GEVENT_CONCURRENCY, POOLED, processes=CORES)
    single = WorkerSpec("gevent x1 process", "gevent", GEVENT_CONCURRENCY, POOLED)
    process_cells = side_by_side([(single, 3000), (several, 3000 * CORES)], ["no-op", "io 100 ms"], queued_first=True)
    cells += [*connection_cells.values(), *process_cells.values()]

    # The template's worker as `make up` runs it (one process, its default concurrency and pool), for results.
    worker = Worker(WorkerSpec("gevent", "gevent", int(settings.CELERY_WORKER_CONCURRENCY), POOLED))
    try:
        worker.consume(True)
        results = bench_results()
    finally:
        worker.stop()
    queues = bench_queues()
    web: dict[str, Any] | None = None
    # >>> example apps
    web = bench_web()  # POST /logs/ of the logs example
    # <<< example apps
    report(cells, results, queues, web)


def print_cell(cell: Cell) -> None:
    peak = f"  peak {cell.peak_connections} connections" if cell.peak_connections is not None else ""
    rate = f"{cell.tasks_per_second:>7.1f}/s"
    print(f"  measured {cell.worker:<22} {cell.workload:<20} {cell.tasks:>5} tasks  {rate}{peak}", flush=True)


def report(cells: list[Cell], results: dict[str, float], queues: dict[str, float], web: dict[str, Any] | None) -> None:
    rate = {(cell.worker, cell.workload): cell.tasks_per_second for cell in cells}
    by_key = {(cell.worker, cell.workload): cell for cell in cells}
    several, single = f"gevent x{CORES} processes", "gevent x1 process"
    ratios = {
        "io: gevent / prefork (target >= 20)": rate["gevent", "io 100 ms"] / rate["prefork", "io 100 ms"],
        "db: gevent patched / unpatched (target >= 10)": rate["gevent", LONG_QUERY]
        / rate["gevent-unpatched", LONG_QUERY],
        "db: pooled / per-task connections (target >= 3)": rate["gevent", SHORT_QUERIES]
        / rate["gevent-per-task-conn", SHORT_QUERIES],
        "db: pooled / PgBouncer, short queries": rate["gevent", SHORT_QUERIES]
        / rate["gevent-pgbouncer", SHORT_QUERIES],
        "db: pooled / PgBouncer, long query": rate["gevent", LONG_QUERY] / rate["gevent-pgbouncer", LONG_QUERY],
        f"no-op: {CORES} processes / 1 process (target >= 1.6)": rate[several, "no-op"] / rate[single, "no-op"],
        f"io: {CORES} processes / 1 process": rate[several, "io 100 ms"] / rate[single, "io 100 ms"],
        "no-op: template / bare Celery, gevent (target >= 0.70)": rate["gevent", "no-op"]
        / rate["bare-celery-gevent", "no-op"],
        "io: prefetch 4 (default) / prefetch 1, acks late": rate["gevent", "io 100 ms"]
        / rate["gevent-prefetch-1", "io 100 ms"],
        "no-op: task events on (Flower watching) / off": rate["gevent-task-events", "no-op"] / rate["gevent", "no-op"],
    }
    header = (
        f"{'worker':<24}{'workload':<21}{'tasks':>7}{'tasks/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'peak conns':>12}"
    )
    print()
    print(
        f"Celery workers (gevent concurrency {GEVENT_CONCURRENCY} per process and a pool of {POOL_SIZE} Postgres "
        f"connections unless the name says otherwise; prefork {CORES} processes; {CORES} cores)"
    )
    print(header)
    print("-" * len(header))
    for c in cells:
        peak = "" if c.peak_connections is None else str(c.peak_connections)
        print(
            f"{c.worker:<24}{c.workload:<21}{c.tasks:>7}{c.tasks_per_second:>10.1f}"
            f"{c.p50_ms:>10.1f}{c.p95_ms:>10.1f}{c.p99_ms:>10.1f}{peak:>12}"
        )
    long_query = by_key["gevent", LONG_QUERY]
    allowed = POOL_SIZE / DB_SECONDS
    print()
    print(f"Connection pool (gevent, concurrency {GEVENT_CONCURRENCY}, DJANGO_DB_POOL_SIZE={POOL_SIZE})")
    print(
        f"  long query ({LONG_QUERY}): {long_query.tasks_per_second:.1f} tasks/s with a pool of {POOL_SIZE}, "
        f"{100 * long_query.tasks_per_second / allowed:.0f}% of what it allows ({allowed:.0f}/s, target >= 70%); "
        f"peak Postgres connections {long_query.peak_connections} (pool {POOL_SIZE})"
    )
    print()
    print("Ratios (same run)")
    for name, value in ratios.items():
        print(f"  {name:<58} {value:8.2f}")
    print()
    print(
        f"Results (sum_task.delay(x, y).get(interval=0.002) from the compose network; gevent worker at concurrency "
        f"{settings.CELERY_WORKER_CONCURRENCY}, django-celery-results in Postgres)"
    )
    print(
        f"  round trip, one at a time: median {results['round_trip_median_ms']} ms, "
        f"p95 {results['round_trip_p95_ms']} ms ({results['round_trips']} tasks; target median <= 12 ms)"
    )
    print(
        f"  the same through django.tasks (django_sum_task.enqueue(), refresh() every 2 ms): median "
        f"{results['django_task_round_trip_median_ms']} ms, p95 {results['django_task_round_trip_p95_ms']} ms"
    )
    print(
        f"  {results['burst']} sent at once, all read back: {results['burst_seconds']} s, "
        f"{results['burst_tasks_per_second']} tasks/s (target >= 250)"
    )
    print()
    print(f"Queues (a gevent worker consuming {TASK_QUEUE} and second; no-op tasks sent one at a time)")
    print(
        f"  idle worker: median {queues['first_queue_p50_ms']} ms on {TASK_QUEUE}, {queues['second_queue_p50_ms']} ms "
        f"on second (p95 {queues['second_queue_p95_ms']} ms)"
    )
    print(
        f"  second, while {TASK_QUEUE} holds a backlog of 100 ms tasks: median "
        f"{queues['second_behind_backlog_p50_ms']} ms ({queues['backlog_left']:.0f} of the backlog still queued after)"
    )
    if web:
        print()
        per_client = web["requests"] // web["clients"]
        print(f"Web: POST /logs/, {web['clients']} keep-alive clients x {per_client} requests")
        print(
            f"  {web['requests_per_second']} requests/s, p50 {web['p50_ms']} ms, p99 {web['p99_ms']} ms, "
            f"{web['errors']} errors (gunicorn {settings.WEB_CONCURRENCY} workers x {settings.GUNICORN_THREADS} "
            "threads)"
        )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "cores": CORES,
                "gevent_concurrency": GEVENT_CONCURRENCY,
                "pool_size": POOL_SIZE,
                "cells": [asdict(cell) for cell in cells],
                "ratios": {name: round(value, 2) for name, value in ratios.items()},
                "results": results,
                "queues": queues,
                "web": web,
            },
            indent=2,
        )
    )
    print(f"\nwritten to bench-results/{path.name}")


if __name__ == "__main__":
    main()
