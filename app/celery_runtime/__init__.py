"""What keeps the Celery worker (and beat) correct and reliable on the gevent pool, in one place.

* green            the Django ORM under gevent: cooperative psycopg2, greenlet-local connections, and the
                   start-up check of the connection budget
* shutdown         Celery's soft shutdown made to work on the gevent pool
* redelivery       the sweep that hands a dead worker's unacknowledged messages back to the queue
* retries          the base task class: transient database errors are retried, not dropped
* results          the result backend: a result write waits out a database restart
* django_tasks     Django's Tasks framework (`django.tasks`) on this worker: the TASKS backend, its results
                   (django_tasks_results), and asyncio loops per greenlet for async tasks (green_asyncio)
* transport        the broker transport: a message taken and recorded unacknowledged in one step
* probes           liveness files for the worker's and beat's container healthchecks
* control          the `conf` remote control command, URLs shown without their passwords
* beat_lock        one beat in the whole deployment: a Postgres advisory lock that beat holds while it runs
* beat_scheduler   django-celery-beat's scheduler, sending only while it holds the beat lock, and touching
                   beat's liveness file

`install(app)` wires them into the Celery app in config/celery_app.py.
"""

from typing import Any


def install(app: Any) -> None:
    """Adds the worker's bootsteps: the database check before it consumes, then liveness and the sweep."""
    import celery_runtime.control  # noqa: F401  # registers the worker's `conf` command in place of Celery's
    from celery_runtime.green import DatabaseReadiness
    from celery_runtime.probes import ConsumerLiveness
    from celery_runtime.redelivery import UnackedRedeliverySweep

    app.steps["worker"].add(DatabaseReadiness)
    app.steps["consumer"].add(ConsumerLiveness)
    app.steps["consumer"].add(UnackedRedeliverySweep)
