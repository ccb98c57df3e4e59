"""gunicorn settings for both stacks: https://docs.gunicorn.org/en/stable/settings.html

Threads, not gevent: the web's work is short ORM requests, and threads keep Django's connection handling
standard (no monkey-patching to get right in a second process type).
"""

import os

bind = "0.0.0.0:8000"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Development: restart workers when code changes (inotify, so an idle server costs no CPU).
reload = os.environ.get("GUNICORN_RELOAD", "false") == "true"
reload_engine = "inotify" if reload else "auto"
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
