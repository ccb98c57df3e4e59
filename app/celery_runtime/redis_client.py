"""A redis-py client on the broker's Redis, for what talks to it outside Celery (the web's health check, the
diagnostics' run reports): the primary that CELERY_BROKER_URL names, through Sentinel for sentinel:// URLs, as
the worker's transport finds it."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from django.conf import settings
from redis.sentinel import Sentinel


def broker_client(url: str | None = None, **options: Any) -> redis.Redis:
    """A client on the broker's primary; `options` are redis-py's connection options (socket timeouts, say)."""
    url = url or settings.CELERY_BROKER_URL
    if urlsplit(url).scheme != "sentinel":
        return redis.Redis.from_url(url, **options)
    transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    parts = [urlsplit(part.strip()) for part in url.split(";") if part.strip()]
    first = parts[0]
    credentials = {
        key: unquote(value) for key, value in (("username", first.username), ("password", first.password)) if value
    }
    database = int(first.path.strip("/") or 0)
    ssl_options = settings.CELERY_BROKER_USE_SSL
    if ssl_options:
        options = {"ssl": True, **ssl_options, **options}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [(part.hostname, part.port or 26379) for part in parts],
        min_other_sentinels=transport_options.get("min_other_sentinels", 0),
        sentinel_kwargs=transport_options.get("sentinel_kwargs"),
        db=database,
        **credentials,
        **options,
    )
    return sentinel.master_for(transport_options["master_name"])  # type: ignore[no-untyped-call]
