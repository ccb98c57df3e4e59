"""gunicorn settings for both stacks: https://docs.gunicorn.org/en/stable/settings.html

Threads, not gevent: the web's work is short ORM requests, and threads keep Django's connection handling
standard (no monkey-patching to get right in a second process type).
"""

import os

bind = "0.0.0.0:8000"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 25
keepalive = 5
# Recycle workers now and then so a slow leak never grows without bound.
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
# The reverse proxy (or Docker's network) is the only client that can reach gunicorn.
forwarded_allow_ips = "*"
# Worker heartbeat files on tmpfs-backed /dev/shm rather than the container's disk.
worker_tmp_dir = "/dev/shm"
# gunicornc's control socket in /tmp: its default, $HOME/.gunicorn, is /app, read-only in production.
control_socket = "/tmp/gunicorn.ctl"

# Production (GUNICORN_LOG_FORMAT=json): gunicorn's own events (boot, worker timeouts) as JSON lines on stdout,
# like Django's. No access log: the proxy's JSON access log has every request, with the client's address
# that gunicorn only sees as the proxy's.
if os.environ.get("GUNICORN_LOG_FORMAT", "plain") == "json":
    accesslog = None
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False}},
        "root": {"level": "INFO", "handlers": ["console"]},
    }
