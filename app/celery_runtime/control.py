"""The worker's `conf` remote control command (`celery inspect conf`, Flower's Config tab), with every URL's
password masked.

Celery masks settings whose names look secret (KEY, PASS, DATABASE, ...) and the broker URL under its own name,
`broker_url`. Read from Django's settings (namespace CELERY), the broker URL is `CELERY_BROKER_URL`, which that
rule does not know: Flower showed the Redis password to whoever could open it. This registers `conf` again,
through Celery's public `control_command`, with the same answer and every `scheme://user:password@host` value
passed through kombu's `maybe_sanitize_url`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.utils.serialization import jsonify
from celery.worker.control import control_command
from kombu.utils.encoding import safe_repr
from kombu.utils.url import maybe_sanitize_url


def without_url_passwords(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: without_url_passwords(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_url_passwords(item) for item in value)
    if isinstance(value, str) and "://" in value and "@" in value:
        return maybe_sanitize_url(value)
    return value


@control_command()
def conf(state: Any, with_defaults: bool = False, **kwargs: Any) -> Any:
    """List configuration, URLs without their passwords."""
    table = without_url_passwords(state.app.conf.table(with_defaults=with_defaults))
    return jsonify(
        table,
        keyfilter=lambda key: isinstance(key, str) and not key.startswith("__"),
        unknown_type_filter=safe_repr,
    )
