# shellcheck shell=bash
# What prod-smoke and swarm-smoke share (sourced): a check's line, and a bounded wait. checks.py is its twin
# for the Python clients.

pass() { echo "ok   $*"; }
fail() {
  echo "FAIL $*" >&2
  exit 1
}
# Polls "$@" until it succeeds, for at most $1 seconds.
within() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}
# What the running workers report (`celery inspect conf`) for the task time limit and the broker transport's
# visibility_timeout, unacked_restore_interval and socket_timeout, one line for all of them when they agree.
# "$@" runs a command in an app container (`docker exec <id>`, `docker compose exec -T worker`).
celery_conf() {
  "$@" python manage.py shell --verbosity 0 -c '
from config.celery_app import app
seen = set()
for conf in (app.control.inspect(timeout=5).conf() or {}).values():
    # Under the names of the Django settings, which the app reads with the namespace CELERY.
    options = conf.get("CELERY_BROKER_TRANSPORT_OPTIONS") or {}
    keys = ("visibility_timeout", "unacked_restore_interval", "socket_timeout")
    values = (conf.get("CELERY_TASK_TIME_LIMIT"), *(options.get(key) for key in keys))
    seen.add(" ".join(f"{value:g}" if isinstance(value, float) else str(value) for value in values))
print(" | ".join(sorted(seen)) or "no worker answered")
'
}

# A task ends its worker process (process_exit_task: os._exit, as a segfault or the OOM killer would), then a task
# sent a second later must run: prints the seconds from the fatal task to that task's result. "$@" runs a command
# in the web container (`docker compose exec -T web`).
worker_comes_back() {
  "$@" python manage.py shell --verbosity 0 -c '
import time, uuid
from diagnostics.tasks import probe_insert_task, process_exit_task
started = time.monotonic()
process_exit_task.delay()
time.sleep(1)
probe_insert_task.delay(f"worker-comes-back-{uuid.uuid4().hex}").get(timeout=90)
print(f"{time.monotonic() - started:.1f}")
'
}
