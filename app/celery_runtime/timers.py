"""A function called every few seconds on the worker's timer, which stops when cancelled: the bootsteps' heartbeat,
redelivery sweep and liveness file.

Not the timer's own `call_repeatedly`: on the gevent pool (celery.concurrency.gevent.Timer, Celery 5.7.0 with
kombu 5.7.0) it returns the greenlet of the first call only, and each call schedules the next in a new greenlet,
so its `cancel()` stops nothing once the function has run once. A consumer step stopped at a reconnect (a Redis
restart) then went on for ever: the closed channel's heartbeat kept its messages from ever coming back (one lost
request in eight `make chaos` runs of redis-restart), and the liveness file was touched while the worker could not
consume (tests/worker/test_redelivery.py, cut off from Redis). Each call here schedules the next with `call_after`,
a one-shot entry that every Celery timer cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Repeating:
    """Calls `function` every `seconds` on `timer` (the worker's) from `seconds` after now, until `cancel()`. A call
    already running when cancelled ends as it would have (a greenlet killed inside a Redis command could leave its
    pooled connection with an unread reply); none comes after it."""

    def __init__(self, timer: Any, seconds: float, function: Callable[[], object]) -> None:
        self._timer = timer
        self._seconds = seconds
        self._function = function
        self._cancelled = False
        self._running = False
        self._next: Any = timer.call_after(seconds, self._call)

    def _call(self) -> None:
        if self._cancelled:
            return
        self._running = True
        try:
            self._function()
        finally:
            self._running = False
            if not self._cancelled:
                self._next = self._timer.call_after(self._seconds, self._call)

    def cancel(self) -> None:
        self._cancelled = True
        if not self._running:
            self._next.cancel()
