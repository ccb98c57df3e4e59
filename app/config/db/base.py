"""Django's PostgreSQL backend with a short circuit breaker on connecting.

While Postgres is going away or coming back, a connect can wait its whole connect_timeout. The web has a few
threads, so a burst of requests queues behind them and the 503 that each would get arrives late. After a failed
connect, further connects in this process fail at once for FAIL_FAST_SECONDS, with the same kind of error
(so they are answered 503, or retried by a task), then one is tried again.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.backends.postgresql import base

FAIL_FAST_SECONDS = 1.0

_last_failure: dict[str, float] = {}  # alias -> monotonic time of the last failed connect, for this process


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        failed_at = _last_failure.get(self.alias)
        if failed_at is not None and time.monotonic() - failed_at < FAIL_FAST_SECONDS:
            ago = time.monotonic() - failed_at
            raise self.Database.OperationalError(f"the database was unreachable {ago:.1f}s ago; not tried again yet")
        try:
            connection = super().get_new_connection(conn_params)
        except Exception:
            _last_failure[self.alias] = time.monotonic()
            raise
        _last_failure.pop(self.alias, None)
        return connection
