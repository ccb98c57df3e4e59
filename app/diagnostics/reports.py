"""Completion reports for `make bench`, batched: each process pushes what its tasks reported in one command every
20 ms, not one per task. A push per task costs Redis a round trip and the worker a Redis call, about a third of
a no-op task's own broker traffic: the instrument would weigh on what it measures, and more on several worker
processes sharing the machine's cores with Redis than on one. Standard library and redis-py only, so the bare
Celery app of the benchmark reports the same way."""

from __future__ import annotations

import threading
import time

import redis

BATCH_SECONDS = 0.02


class BatchedReports:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pending: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._flush_due = False

    def add(self, report_to: str, sent_at: float) -> None:
        """Records 'sent_at done_at' (done now) for the list `report_to`; it is pushed within BATCH_SECONDS."""
        entry = f"{sent_at} {time.time()}"
        with self._lock:
            self._pending.setdefault(report_to, []).append(entry)
            if self._flush_due:
                return
            self._flush_due = True
        timer = threading.Timer(BATCH_SECONDS, self.flush)
        timer.daemon = True
        timer.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._flush_due = self._pending, {}, False
        pipeline = self._client.pipeline(transaction=False)
        for report_to, entries in pending.items():
            pipeline.rpush(report_to, *entries)
        pipeline.execute()
