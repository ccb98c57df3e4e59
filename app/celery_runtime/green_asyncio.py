"""asyncio event loops in greenlets: each greenlet sees only its own running loop.

asyncio keeps the running loop per OS thread, and a gevent worker runs all its tasks in greenlets of one thread.
An async task (django.tasks, celery_runtime.django_tasks) runs its coroutine in an event loop whose waits yield
to the hub (gevent patched select), so the other tasks run meanwhile; but they would all find that loop running
in "their" thread: Django then refuses their database queries (SynchronousOnlyOperation, seen on the test worker
with Django's async_to_sync as it is), and a second async task cannot start a loop of its own.

`install()` sets a greenlet trace function (greenlet's public settrace) that, at each switch, keeps the running
loop of the greenlet left and restores the one of the greenlet entered, with asyncio's
`_get_running_loop`/`_set_running_loop`: low-level functions asyncio exports for event loop implementations.
Installed by the first async task a process runs, so a worker that runs none pays nothing; a trace function set
before (gevent's monitor thread) is called as well.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

_loops: weakref.WeakKeyDictionary[Any, asyncio.AbstractEventLoop] = weakref.WeakKeyDictionary()
_installed = False
_lock = threading.Lock()


def install() -> None:
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        import greenlet

        previous = greenlet.settrace(None)

        def trace(event: str, args: tuple[Any, Any]) -> None:
            if event in ("switch", "throw"):
                origin, target = args
                loop = asyncio._get_running_loop()
                if loop is not None:
                    _loops[origin] = loop
                else:
                    _loops.pop(origin, None)
                asyncio._set_running_loop(_loops.get(target))
            if previous is not None:
                previous(event, args)

        greenlet.settrace(trace)
        _installed = True
