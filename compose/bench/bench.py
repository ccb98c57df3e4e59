"""make bench: throughput and latency of the Celery worker by pool and workload, and of the web tier.

Runs inside the compose network (the `bench` service), against the stack's own Postgres and Redis. Each
worker under test is started here as a real `celery worker` process on a Redis database of its own, so the
development worker never sees these tasks. Every figure comes from this run; the ratios compare cells
measured minutes apart on the same machine. This is a benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

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

from config.celery_app import app  # noqa: E402
from diagnostics.models import ProbeRecord  # noqa: E402

BROKER_URL = settings.CELERY_BROKER_URL  # Redis database 2 (the bench service), not the dev worker's
CORES = os.cpu_count() or 1
GEVENT_CONCURRENCY = int(os.environ.get("BENCH_GEVENT_CONCURRENCY", "100"))
IO_SECONDS = 0.1
DB_SECONDS = 0.1
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


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


class Worker:
    """A real `celery worker` process, started and stopped around a set of workloads."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.hostname = f"bench-{spec.label}-{uuid.uuid4().hex[:6]}@%h"
        env = {
            **os.environ,
            "DJANGO_CONN_MAX_AGE": "0",
            "DJANGO_DB_APPLICATION_NAME": "bench-worker",
            "GEVENT_MONITOR_THREAD_ENABLE": "false",  # its reports would be noise for the unpatched run
            **spec.env,
        }
        command = ["celery", "-A", spec.app, "worker", "-P", spec.pool, "-c", str(spec.concurrency)]
        command += ["--loglevel", "WARNING", "--hostname", self.hostname, "--without-mingle", "--without-gossip"]
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - open while the worker runs; stop() closes it
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        name = self.hostname.replace("%h", os.uname().nodename)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"worker {self.spec.label} exited at start:\n{self.log.read()}")
            if app.control.ping(destination=[name], timeout=0.5):
                return
        raise SystemExit(f"worker {self.spec.label} did not answer a ping within 60 s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def run_workload(worker: str, workload: str, tasks: int) -> Cell:
    report_to = f"bench:{uuid.uuid4().hex}"
    reports.delete(report_to)
    started = time.time()
    for index in range(tasks):
        kwargs = {"report_to": report_to, "sent_at": time.time()}
        if workload == "no-op":
            app.send_task("diagnostics.tasks.noop_task", kwargs=kwargs)
        elif workload == "io 100 ms":
            app.send_task("diagnostics.tasks.sleep_task", args=[IO_SECONDS], kwargs=kwargs)
        else:
            args = [DB_SECONDS, f"bench-{report_to}-{index}"]
            app.send_task("diagnostics.tasks.database_sleep_insert_task", args=args, kwargs=kwargs)
    deadline = time.monotonic() + 120
    while reports.llen(report_to) < tasks:
        if time.monotonic() > deadline:
            raise SystemExit(f"{worker} / {workload}: {reports.llen(report_to)} of {tasks} finished in 120 s")
        time.sleep(0.02)
    pairs = [tuple(map(float, raw.split())) for raw in reports.lrange(report_to, 0, -1)]
    reports.delete(report_to)
    latencies = sorted((done - sent) * 1000 for sent, done in pairs)
    seconds = max(done for _, done in pairs) - started
    return Cell(
        worker=worker,
        workload=workload,
        tasks=tasks,
        seconds=round(seconds, 2),
        tasks_per_second=round(tasks / seconds, 1),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
    )


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


def scaled(count: int) -> int:
    return max(10, int(count * SCALE))


def main() -> None:
    ProbeRecord.objects.filter(key__startswith="bench-").delete()
    app.control.purge()
    per_pool = {  # tasks per workload, sized so that each cell takes a few seconds
        "gevent": {"no-op": 3000, "io 100 ms": 3000, "db pg_sleep+insert": 1500},
        "gevent-unpatched": {"no-op": 3000, "io 100 ms": 3000, "db pg_sleep+insert": 60},
        "prefork": {"no-op": 3000, "io 100 ms": 100, "db pg_sleep+insert": 100},
        "solo": {"no-op": 2000, "io 100 ms": 50, "db pg_sleep+insert": 50},
    }
    specs = [
        WorkerSpec("gevent", "gevent", GEVENT_CONCURRENCY),
        WorkerSpec("gevent-unpatched", "gevent", GEVENT_CONCURRENCY, {"PSYCOPG2_COOPERATIVE": "false"}),
        WorkerSpec("prefork", "prefork", CORES),
        WorkerSpec("solo", "solo", 1),
    ]
    cells: list[Cell] = []
    for spec in specs:
        worker = Worker(spec)
        try:
            for workload, tasks in per_pool[spec.label].items():
                cells.append(run_workload(spec.label, workload, scaled(tasks)))
                print_cell(cells[-1])
        finally:
            worker.stop()

    prefetch_one = {"CELERY_WORKER_PREFETCH_MULTIPLIER": "1"}
    task_events = {"CELERY_WORKER_SEND_TASK_EVENTS": "true"}
    extra = [
        (WorkerSpec("gevent-prefetch-1", "gevent", GEVENT_CONCURRENCY, prefetch_one), "io 100 ms", 400),
        (WorkerSpec("gevent-task-events", "gevent", GEVENT_CONCURRENCY, task_events), "no-op", 3000),
        (WorkerSpec("bare-celery-gevent", "gevent", GEVENT_CONCURRENCY, app="bare_celery_app"), "no-op", 3000),
    ]
    for spec, workload, tasks in extra:
        worker = Worker(spec)
        try:
            cells.append(run_workload(spec.label, workload, scaled(tasks)))
            print_cell(cells[-1])
        finally:
            worker.stop()
    ProbeRecord.objects.filter(key__startswith="bench-").delete()

    web = bench_web()
    report(cells, web)


def print_cell(cell: Cell) -> None:
    print(
        f"  measured {cell.worker:<20} {cell.workload:<20} {cell.tasks:>5} tasks  {cell.tasks_per_second:>7.1f}/s",
        flush=True,
    )


def report(cells: list[Cell], web: dict[str, Any]) -> None:
    rate = {(cell.worker, cell.workload): cell.tasks_per_second for cell in cells}
    ratios = {
        "io: gevent / prefork (target >= 20)": rate["gevent", "io 100 ms"] / rate["prefork", "io 100 ms"],
        "db: gevent patched / unpatched (target >= 10)": rate["gevent", "db pg_sleep+insert"]
        / rate["gevent-unpatched", "db pg_sleep+insert"],
        "no-op: template / bare Celery, gevent (target >= 0.70)": rate["gevent", "no-op"]
        / rate["bare-celery-gevent", "no-op"],
        "io: prefetch 4 (default) / prefetch 1, acks late": rate["gevent", "io 100 ms"]
        / rate["gevent-prefetch-1", "io 100 ms"],
        "no-op: task events on (Flower watching) / off": rate["gevent-task-events", "no-op"] / rate["gevent", "no-op"],
    }
    header = f"{'worker':<22}{'workload':<21}{'tasks':>7}{'tasks/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
    print()
    print(f"Celery workers (gevent concurrency {GEVENT_CONCURRENCY}, prefork {CORES} processes, {CORES} cores)")
    print(header)
    print("-" * len(header))
    for c in cells:
        print(
            f"{c.worker:<22}{c.workload:<21}{c.tasks:>7}{c.tasks_per_second:>10.1f}"
            f"{c.p50_ms:>10.1f}{c.p95_ms:>10.1f}{c.p99_ms:>10.1f}"
        )
    print()
    print("Ratios (same run)")
    for name, value in ratios.items():
        print(f"  {name:<58} {value:8.2f}")
    print()
    print(f"Web: POST /logs/, {web['clients']} keep-alive clients x {web['requests'] // web['clients']} requests")
    print(
        f"  {web['requests_per_second']} requests/s, p50 {web['p50_ms']} ms, p99 {web['p99_ms']} ms, "
        f"{web['errors']} errors (gunicorn {settings.WEB_CONCURRENCY} workers x {settings.GUNICORN_THREADS} threads)"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "cores": CORES,
                "gevent_concurrency": GEVENT_CONCURRENCY,
                "cells": [asdict(cell) for cell in cells],
                "ratios": {name: round(value, 2) for name, value in ratios.items()},
                "web": web,
            },
            indent=2,
        )
    )
    print(f"\nwritten to bench-results/{path.name}")


if __name__ == "__main__":
    main()
