"""Settings shared by every environment. Every value that varies comes from the environment via config.env."""

import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.env import celery_settings_from_env, env, reject_unknown_django_variables

BASE_DIR = Path(__file__).resolve().parent.parent.parent


# Core: https://docs.djangoproject.com/en/6.0/ref/settings/
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_celery_results",
    "django_celery_beat",
    "celery_runtime",
    "users",
    "home",
    "diagnostics",
    # >>> example apps: `make init EXAMPLES=drop` removes them, with everything between these two lines
    "logs",
    "calc",
    "heartbeat",
    # <<< example apps
]

# The project's own user model from the first migration on (users.models): it takes fields in an ordinary migration.
AUTH_USER_MODEL = "users.User"

# The landing page at / (home): which services are up, links, the example tasks to try. On in development
# (settings.local) and the tests; production turns it on only with DJANGO_LANDING_PAGE=true (/ is a 404 otherwise).
LANDING_PAGE = env.bool("DJANGO_LANDING_PAGE", default=True)
# JSON endpoints that change state (config.api.api_write) need `Authorization: Bearer <this>` when it is set.
API_WRITE_TOKEN = env.str("DJANGO_API_WRITE_TOKEN", default="")
# >>> example apps
# The example apps' endpoints (/logs/, /tasks/, /heartbeats/): on in development and the tests; production turns
# them on only with DJANGO_EXAMPLE_ENDPOINTS=true, and then requires DJANGO_API_WRITE_TOKEN for their writes.
EXAMPLE_ENDPOINTS = env.bool("DJANGO_EXAMPLE_ENDPOINTS", default=True)
# <<< example apps
# make chaos only: a Redis list on the broker that receives every successful task run (diagnostics), to count runs.
DIAGNOSTICS_RUNS_TO = env.str("DIAGNOSTICS_RUNS_TO", default="")
# The Redis the diagnostics tasks report to (runs, bench timings): the broker's unless set. make chaos's Sentinel
# failover sets a Redis apart, since a failover may lose the broker's last writes, and with them what counts runs.
DIAGNOSTICS_REPORTS_URL = env.str("DIAGNOSTICS_REPORTS_URL", default="")
# Where the landing page links to Flower (empty: no link). Development: http://localhost:5555/ (compose).
FLOWER_URL = env.str("DJANGO_FLOWER_URL", default="")

MIDDLEWARE = [
    # Outermost: Postgres or Redis down gives a 503 JSON with Retry-After, whichever layer met the error.
    "config.middleware.DependencyUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# Database: https://docs.djangoproject.com/en/6.0/ref/databases/#postgresql-notes
DATABASES = {"default": env.db_url("DATABASE_URL")}
# Django's PostgreSQL backend, failing fast for a second after a failed connect (config/db/base.py).
DATABASES["default"]["ENGINE"] = "config.db"
# The web reuses a connection for a minute. The gevent worker must use 0: each task runs in a new greenlet, and
# Celery closes the task's connection when it ends (with the pool below, that gives it back to the pool).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["OPTIONS"] = {
    # Names the process in pg_stat_activity, so connections can be counted per service.
    "application_name": env.str("DJANGO_DB_APPLICATION_NAME", default="django"),
    # A runaway query blocks a gevent worker's hub, where the task time limit cannot fire: the server ends it.
    "options": f"-c statement_timeout={env.int('DJANGO_DB_STATEMENT_TIMEOUT_MS', default=30_000)}",
    # A server that does not answer fails the request within seconds (a 503), instead of holding it.
    "connect_timeout": 2,  # libpq's least
}
# The gevent worker's tasks share a pool of at most this many open connections per worker process, whatever its
# concurrency (celery_runtime.postgres_pool). 0, for the web, beat and manage.py: Django's connection per thread.
DATABASE_POOL_SIZE = env.int("DJANGO_DB_POOL_SIZE", default=0)
if DATABASE_POOL_SIZE < 0:
    raise ImproperlyConfigured(f"DJANGO_DB_POOL_SIZE={DATABASE_POOL_SIZE} must be 0 (no pool) or more")
if DATABASE_POOL_SIZE:
    DATABASES["default"]["ENGINE"] = "celery_runtime.postgres_pool"
    DATABASES["default"]["OPTIONS"] |= {
        "MAX_CONNS": DATABASE_POOL_SIZE,
        # A task that waits longer for a free connection is retried later, with a warning naming the pool size.
        "POOL_TIMEOUT": env.float("DJANGO_DB_POOL_TIMEOUT", default=30.0),
    }


# Passwords: https://docs.djangoproject.com/en/6.0/topics/auth/passwords/
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]


# Static files (served by WhiteNoise): https://whitenoise.readthedocs.io/en/stable/django.html
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


# Logging: https://docs.djangoproject.com/en/6.0/topics/logging/
LOG_LEVEL = env.str("DJANGO_LOG_LEVEL", default="INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}


# Django's Tasks framework (`from django.tasks import task`), run by the Celery worker: celery_runtime.django_tasks,
# docs/django-tasks.md. DJANGO_TASKS_QUEUES: the queue names a task may be sent to (`queue_name`), comma-separated;
# "default" is the worker's default Celery queue; empty allows any name.
TASKS = {
    "default": {
        "BACKEND": "celery_runtime.django_tasks.CeleryBackend",
        "QUEUES": env.list("DJANGO_TASKS_QUEUES", default=["default"]),
    }
}
for _queue in TASKS["default"]["QUEUES"]:
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]+", _queue):
        raise ImproperlyConfigured(
            f"DJANGO_TASKS_QUEUES: {_queue!r} is not a queue name (letters, digits and _ . : @ - only)"
        )

# Celery: https://docs.celeryq.dev/en/stable/userguide/configuration.html
# Defaults for a gevent worker on a Redis broker. Any CELERY_* variable in the environment overrides the
# setting of that name, typed by Celery's own option table; an unknown name stops start-up.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
# kombu's Redis transport, with every message owned by the live worker process that took it: never handed to
# another while it lives, back in its queue within seconds when it dies, set aside after repeated deaths
# (celery_runtime.transport; docs/reliability.md).
CELERY_BROKER_TRANSPORT = "celery_runtime.transport:Transport"
# Results go to Postgres through django-celery-results, where the admin shows them; a write waits out a
# database restart (celery_runtime.results).
CELERY_RESULT_BACKEND = "celery_runtime.results:RetryingDatabaseBackend"
CELERY_RESULT_EXTENDED = True  # keeps the task name and arguments beside the result, for the admin
# One result backend per process. Celery otherwise builds one per thread, and under gevent every task is a
# thread of its own: each task built a backend, a measurable part of a short task's time (docs/performance.md).
# Safe to share: the backend holds no connection (Django's are per greenlet) and no per-task state.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_IGNORE_RESULT = True  # nobody reads most results; a task that returns one says ignore_result=False
CELERY_TASK_ACKS_LATE = True  # acked after it runs, so a crash redelivers it; tasks here are idempotent
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A worker process silent this long (no heartbeat) is taken for dead, and its tasks go back to their queues
    # (celery_runtime.redelivery): the bound on a dead worker's tasks, and on a live one whose gevent hub is blocked.
    "worker_liveness_timeout": 15,
    # How often each worker looks for dead workers' tasks.
    "unacked_restore_interval": 5,
    # Deliveries that may end in the death of their worker before a message is set aside as a dead letter.
    "delivery_limit": 3,
    # Only for messages recorded without an owner (kombu's own code): handed out again after this many seconds.
    "visibility_timeout": 3600,
    # Redis gone or hanging: a publish (a request's enqueue) fails within seconds rather than waiting on a
    # dead socket. Longer than the consumer's 1 s BRPOP, which reads on the same kind of socket.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
# An enqueue retries a lost connection briefly, then fails (the web answers 503): about 4 s at the most.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# With acks late on gevent and Redis, a multiplier of 1 makes the worker many times slower on tasks that wait
# (make bench's prefetch ratio, in docs/performance.md).
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_WORKER_CONCURRENCY = 20  # greenlets; each one that touches the ORM holds a Postgres connection
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True  # wait for Redis at start-up rather than exit
# After a lost broker connection, running tasks finish and are acknowledged if Redis is back. Celery's cancel
# would stop them instead, and the gevent pool ends a cancelled task in an acknowledgement: the task would be
# lost. Finishing it at worst runs it twice (redelivered meanwhile), which idempotent tasks allow.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_TIME_LIMIT = 120  # hard limit in seconds; the gevent pool has no soft time limit
# On SIGQUIT (SIGTERM too where REMAP_SIGTERM=SIGQUIT, as in production) running tasks get this long to finish;
# the rest are cancelled and go back to the queue. Docker's stop_grace_period must be longer.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 60.0
CELERY_TASK_SERIALIZER = "json"  # JSON only: pickle from the broker would run arbitrary code
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Task events cost the gevent worker a large part of its no-op throughput (gevent cannot buffer them; make bench's
# events ratio, in docs/performance.md). Flower switches them on in every worker while it runs (enable_events), so
# they are sent only while someone watches.
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TIMEZONE = TIME_ZONE
# django-celery-beat's DatabaseScheduler, which also touches a file on every tick for the healthcheck.
CELERY_BEAT_SCHEDULER = "celery_runtime.beat_scheduler:LivenessDatabaseScheduler"
# How often beat looks at the schedule in Postgres: an edit in the admin takes effect within this many seconds.
CELERY_BEAT_MAX_LOOP_INTERVAL = 15
# Copied into django-celery-beat's tables when beat starts; edit the run there (admin) or here.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # >>> example apps
    "record-heartbeat": {
        "task": "heartbeat.tasks.heartbeat_record_task",
        "schedule": 30.0,  # every 30 seconds: often enough to watch on a fresh stack
    },
    # <<< example apps
}
# TLS for a rediss:// broker URL (below), or Celery's broker_use_ssl options from the environment.
CELERY_BROKER_USE_SSL: Any = None
_transport_option_defaults = CELERY_BROKER_TRANSPORT_OPTIONS
globals().update(celery_settings_from_env())
# CELERY_BROKER_TRANSPORT_OPTIONS from the environment adds to the defaults above key by key: setting the
# visibility timeout alone keeps the socket timeouts.
CELERY_BROKER_TRANSPORT_OPTIONS = {**_transport_option_defaults, **CELERY_BROKER_TRANSPORT_OPTIONS}
_broker_scheme = urlsplit(CELERY_BROKER_URL).scheme
if _broker_scheme not in ("redis", "rediss", "sentinel"):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL: the scheme {_broker_scheme}:// is not one the worker's transport keeps "
        "(celery_runtime.transport takes redis://, rediss:// and sentinel://; other brokers need a transport of "
        "their own)"
    )
if _broker_scheme == "sentinel":
    # Redis Sentinel: the Sentinels' URLs separated by ';', the primary's name in the transport options.
    _not_sentinel = [url for url in CELERY_BROKER_URL.split(";") if urlsplit(url.strip()).scheme != "sentinel"]
    if _not_sentinel:
        raise ImproperlyConfigured(
            "CELERY_BROKER_URL: every URL of a Sentinel broker is sentinel://host:port (separated by ';'); "
            f"not {_not_sentinel[0]!r}"
        )
    if not isinstance(CELERY_BROKER_TRANSPORT_OPTIONS.get("master_name"), str):
        raise ImproperlyConfigured(
            "CELERY_BROKER_TRANSPORT_OPTIONS: a sentinel:// CELERY_BROKER_URL needs master_name, the name the "
            'Sentinels monitor the primary under (e.g. {"master_name": "mymaster"})'
        )
    if CELERY_BROKER_TRANSPORT == "celery_runtime.transport:Transport":
        CELERY_BROKER_TRANSPORT = "celery_runtime.transport:SentinelTransport"
if _broker_scheme == "rediss" and not CELERY_BROKER_USE_SSL:
    # The transport is named above, so kombu does not see the scheme and would connect in plain text: TLS as
    # the URL asks, checking the server's certificate unless ?ssl_cert_reqs= says otherwise.
    _cert_reqs = parse_qs(urlsplit(CELERY_BROKER_URL).query).get("ssl_cert_reqs", ["required"])[0].upper()
    _cert_reqs = _cert_reqs if _cert_reqs.startswith("CERT_") else f"CERT_{_cert_reqs}"
    if _cert_reqs not in ("CERT_REQUIRED", "CERT_OPTIONAL", "CERT_NONE"):
        raise ImproperlyConfigured(
            f"CELERY_BROKER_URL: ssl_cert_reqs={_cert_reqs} is not one of required, optional, none"
        )
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": getattr(ssl, _cert_reqs)}
if CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix"):
    raise ImproperlyConfigured(
        "CELERY_BROKER_TRANSPORT_OPTIONS: global_keyprefix is not supported by the worker's transport (its scripts "
        "name their keys); give the project a Redis database of its own instead (the /N of CELERY_BROKER_URL)"
    )
# Under gevent with acks late, every task that finishes acks over a Redis connection of the consumer's pool;
# a pool smaller than the concurrency fails acks with "Too many connections". Sized here unless set above.
CELERY_BROKER_TRANSPORT_OPTIONS.setdefault("max_connections", int(CELERY_WORKER_CONCURRENCY) + 10)

# How many worker processes share Postgres, so each can check at start-up that all their pools fit beside the
# web's connections (celery_runtime.green): start-worker sets WORKER_PROCESSES to the processes it starts in its
# container; WORKER_REPLICAS is the number of worker containers, where the deployment fixes it.
# `auto`, the env files' default, is for start-worker to turn into a number before Celery starts; the other
# processes (web, beat, migrate), which read the same env file, do not count worker processes.
WORKER_PROCESSES = 1 if env.str("WORKER_PROCESSES", default="1") == "auto" else env.int("WORKER_PROCESSES", default=1)
WORKER_REPLICAS = env.int("WORKER_REPLICAS", default=1)
# Touched by each worker process while it consumes, for the container healthcheck (celery_runtime.probes).
WORKER_LIVENESS_FILE = env.str("WORKER_LIVENESS_FILE", default="/tmp/celery-worker-alive")
# gunicorn's size, read here as well so the worker can count the web's Postgres connections.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=2)
GUNICORN_THREADS = env.int("GUNICORN_THREADS", default=4)

# Last: a DJANGO_* variable that no settings module reads is a typo (DJANGO_DEBGU), not a setting ignored.
reject_unknown_django_variables()
