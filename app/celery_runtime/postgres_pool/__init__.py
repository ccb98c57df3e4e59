"""The gevent worker's Postgres connections: a bounded pool that greenlets share (DATABASES ENGINE).

Without it every task opens a connection of its own and closes it when it ends: Postgres forks a backend and
checks the password, which costs far more than the task's queries (measured in docs/performance.md), and there
are as many connections as the worker has greenlets. With it, a task takes an open connection from the process's
pool when it first touches the ORM and gives it back when it ends (Celery closes the task's connections after
every task, failed ones included, and closing one here returns it). The pool holds at most DJANGO_DB_POOL_SIZE
connections whatever the concurrency; a task that finds them all in use waits for one.

django-db-geventpool provides the pool and its Django backend; base.py keeps them and mends what a gevent
worker under load runs into (each fix is in the docstring of what it changes).
"""
